//! Language-model wrapper: embedding → blocks (Mamba / attention, from a layer pattern) →
//! final RMSNorm → LM head.
use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::{Int, Tensor, backend::Backend};

use super::attention::{
    AttentionBlock, AttentionConfig, AttnBias, AttnSoftmax, Positional, sinusoidal_positions,
};
use super::conv_block::{ConvBlock, ConvBlockConfig};
use super::mamba::{MambaBlock, MambaConfig, MambaConv};
use crate::fused::{BlockState, ScanBackend, embedding, head_loss, rms_norm};
use crate::math::masked_loss;

/// Configuration of a full language model.
#[derive(Config, Debug)]
pub struct LmConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub d_model: usize,
    /// One letter per layer: `M` = Mamba, `A` = attention, `C` = gated conv mixer (e.g.
    /// `"MMMA"`).
    pub pattern: String,
    /// SSM state size.
    #[config(default = "super::defaults::D_STATE")]
    pub d_state: usize,
    /// Mamba expansion factor.
    #[config(default = "super::defaults::EXPAND")]
    pub expand: usize,
    /// Mamba conv kernel.
    #[config(default = "super::defaults::D_CONV")]
    pub d_conv: usize,
    /// Distance between the Mamba conv's taps.
    #[config(default = 1)]
    pub conv_dilation: usize,
    /// The conv on the Mamba scan's input, or none.
    #[config(default = "MambaConv::Depthwise")]
    pub conv_kind: MambaConv,
    /// A causal conv over Mamba's `[B | C]` too (Mamba-2).
    #[config(default = false)]
    pub conv_bc: bool,
    /// Mamba Δ rank (`None` = ceil(d_model/16)).
    #[config(default = "None")]
    pub dt_rank: Option<usize>,
    /// Use the LTI (S4-style) ablation in Mamba layers.
    #[config(default = false)]
    pub lti: bool,
    /// Attention heads.
    #[config(default = "super::defaults::N_HEADS")]
    pub n_heads: usize,
    /// Attention MLP ratio.
    #[config(default = "super::defaults::MLP_RATIO")]
    pub mlp_ratio: usize,
    /// Positional information.
    #[config(default = "Positional::None")]
    pub positional: Positional,
    /// How attention scores become weights.
    #[config(default = "AttnSoftmax::Softmax")]
    pub attn_softmax: AttnSoftmax,
    /// Bias added to attention scores by distance.
    #[config(default = "AttnBias::None")]
    pub attn_bias: AttnBias,
    /// Kernel of a depthwise causal conv between the MLP layers of attention blocks (0: none).
    #[config(default = 0)]
    pub mlp_conv: usize,
}

/// A layer pattern of `M`/`A` letters for `n_layers` with an attention layer every `k`-th
/// position (1-based: `attn_every = 2, n_layers = 4` gives `"MAMA"`).
pub fn pattern_attn_every(n_layers: usize, k: usize) -> String {
    (1..=n_layers)
        .map(|i| if k > 0 && i % k == 0 { 'A' } else { 'M' })
        .collect()
}

impl LmConfig {
    /// The Mamba mixer configuration used for `M` layers.
    pub fn mamba(&self) -> MambaConfig {
        MambaConfig::new(self.d_model)
            .with_d_state(self.d_state)
            .with_expand(self.expand)
            .with_d_conv(self.d_conv)
            .with_conv_dilation(self.conv_dilation)
            .with_conv_kind(self.conv_kind)
            .with_conv_bc(self.conv_bc)
            .with_dt_rank(self.dt_rank)
            .with_lti(self.lti)
    }

    /// The attention configuration used for `A` layers.
    pub fn attention(&self) -> AttentionConfig {
        AttentionConfig::new(self.d_model)
            .with_n_heads(self.n_heads)
            .with_mlp_ratio(self.mlp_ratio)
            .with_rope(self.positional == Positional::Rope)
            .with_softmax(self.attn_softmax)
            .with_bias(self.attn_bias)
            .with_mlp_conv(self.mlp_conv)
    }

    /// The conv mixer configuration used for `C` layers.
    pub fn conv_block(&self) -> ConvBlockConfig {
        ConvBlockConfig::new(self.d_model)
            .with_d_conv(self.d_conv)
            .with_mlp_ratio(self.mlp_ratio)
    }

    /// Initialises the model from `seed`, the same weights whatever else runs in the process.
    ///
    /// Burn's CPU backends draw from one process-wide generator, so two runs seeding and
    /// initialising at once (tests in one binary, runs started side by side) would interleave
    /// their draws and neither would get its seed's weights; the lock makes seed + init one step.
    pub fn init_seeded<B: Backend>(&self, seed: u64, device: &B::Device) -> Lm<B> {
        static SEED_AND_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = SEED_AND_INIT.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(device, seed);
        let model = self.init(device);
        // Burn initialises parameters lazily, on first use: draw them all now, under the lock.
        model.visit(&mut DrawParams);
        model
    }

    /// Initialises the model from the backend's generator as it stands. Panics on a pattern
    /// letter other than `M`/`A`/`C` (validated earlier by the run config).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Lm<B> {
        let blocks = self
            .pattern
            .chars()
            .map(|ch| match ch {
                'M' | 'm' => Block::Mamba(self.mamba().init_block(device)),
                'A' | 'a' => Block::Attention(self.attention().init(device)),
                'C' | 'c' => Block::Conv(self.conv_block().init(device)),
                other => panic!("layer pattern letter `{other}` is not M, A or C"),
            })
            .collect();
        Lm {
            embedding: EmbeddingConfig::new(self.vocab_size, self.d_model).init(device),
            blocks,
            norm_f: RmsNormConfig::new(self.d_model)
                .with_epsilon(1e-5)
                .init(device),
            head: LinearConfig::new(self.d_model, self.vocab_size)
                .with_bias(false)
                .init(device),
            absolute_positions: self.positional == Positional::Absolute,
        }
    }
}

/// Materialises every lazily initialised parameter, in the module's declaration order.
struct DrawParams;

impl<B: Backend> ModuleVisitor<B> for DrawParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        param.val();
    }
}

/// One residual block of either kind.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Block<B: Backend> {
    /// `x + Mamba(RMSNorm(x))`.
    Mamba(MambaBlock<B>),
    /// Pre-norm attention + MLP.
    Attention(AttentionBlock<B>),
    /// Pre-norm gated conv mixer + MLP.
    Conv(ConvBlock<B>),
}

impl<B: ScanBackend> Block<B> {
    /// `[batch, L, d_model] → [batch, L, d_model]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Block::Mamba(b) => b.forward(x),
            Block::Attention(b) => b.forward(x),
            Block::Conv(b) => b.forward(x),
        }
    }
}

/// Embedding + blocks + final norm + head.
#[derive(Module, Debug)]
pub struct Lm<B: Backend> {
    /// Token embedding `[vocab, d_model]`.
    pub embedding: Embedding<B>,
    /// Residual blocks in pattern order.
    pub blocks: Vec<Block<B>>,
    /// Final RMSNorm.
    pub norm_f: RmsNorm<B>,
    /// LM head `[d_model, vocab]`, no bias.
    pub head: Linear<B>,
    absolute_positions: bool,
}

impl<B: Backend> Lm<B> {
    /// Whether sinusoidal absolute positions are added to the embeddings.
    pub fn absolute_positions(&self) -> bool {
        self.absolute_positions
    }
}

impl<B: ScanBackend> Lm<B> {
    /// Token ids `[batch, L]` → logits `[batch, L, vocab]`.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.head.forward(self.features(tokens, &[])) // [batch, L, vocab]
    }

    /// [`masked_loss`] of the logits for `tokens` against `targets` with `weights` (all
    /// `[batch, L]`): `(loss, correct)`, through [`crate::fused::head_loss`] (one fused op on
    /// host-memory backends) when the head has no bias.
    pub fn loss(
        &self,
        tokens: Tensor<B, 2, Int>,
        targets: Tensor<B, 2, Int>,
        weights: Tensor<B, 2>,
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        self.loss_from(tokens, targets, weights, &[])
    }

    /// [`Self::loss`] with the Mamba blocks' scans started from `states` (one per Mamba block
    /// in order, see [`BlockState`]; empty means zeros everywhere).
    pub fn loss_from(
        &self,
        tokens: Tensor<B, 2, Int>,
        targets: Tensor<B, 2, Int>,
        weights: Tensor<B, 2>,
        states: &[BlockState],
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let x = self.features(tokens, states); // [batch, L, d_model]
        match self.head.bias {
            None => head_loss(x, self.head.weight.val(), targets, weights),
            // The loss in f32 whatever the activations' dtype, as `head_loss` takes it.
            Some(_) => {
                let logits = self.head.forward(x).cast(burn::tensor::FloatDType::F32);
                masked_loss(logits, targets, weights)
            }
        }
    }

    /// The Mamba blocks in order (those [`Self::loss_from`]'s states go to).
    pub fn mamba_blocks(&self) -> impl Iterator<Item = &MambaBlock<B>> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Mamba(m) => Some(m),
            Block::Attention(_) | Block::Conv(_) => None,
        })
    }

    /// Token ids `[batch, L]` → the final norm's output `[batch, L, d_model]`.
    fn features(&self, tokens: Tensor<B, 2, Int>, states: &[BlockState]) -> Tensor<B, 3> {
        let [_, len] = tokens.dims();
        let mut x = embedding(&self.embedding, tokens); // [batch, L, d_model]
        if self.absolute_positions {
            let (d, device) = (x.dims()[2], x.device());
            let table = sinusoidal_positions::<B>(len, d, &device).cast(x.dtype()); // [1, L, d]
            x = x + table; // [batch, L, d_model]
        }
        let mut states = states.iter();
        for block in &self.blocks {
            x = match block {
                Block::Mamba(b) => match states.next() {
                    Some(state) => b.forward_from(x, state),
                    None => b.forward(x),
                },
                Block::Attention(b) => b.forward(x),
                Block::Conv(b) => b.forward(x),
            }; // [batch, L, d_model]
        }
        rms_norm(&self.norm_f, x) // [batch, L, d_model]
    }
}
