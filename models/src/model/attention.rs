//! Causal multi-head attention block (pre-norm residual: attention then MLP).
use burn::config::Config;
use burn::module::Module;
use burn::module::Param;
use burn::nn::{Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::fused::{
    AttentionOptions, BIAS_BUCKETS, ScanBackend, Variant, alibi_slope, bucket, causal_conv, linear,
    linear_gelu, rms_norm, ssmax_init,
};
pub use crate::fused::{AttnBias, AttnSoftmax};

/// Position information used by a model.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Positional {
    /// No positional information (attention is then permutation-equivariant up to the mask).
    None,
    /// Fixed sinusoidal absolute embeddings added to the token embeddings.
    Absolute,
    /// Rotary embeddings applied to queries and keys in each attention layer.
    Rope,
}

/// Configuration of one attention block.
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Model width.
    pub d_model: usize,
    /// Number of heads; must divide `d_model`.
    #[config(default = "super::defaults::N_HEADS")]
    pub n_heads: usize,
    /// MLP hidden size = mlp_ratio · d_model.
    #[config(default = "super::defaults::MLP_RATIO")]
    pub mlp_ratio: usize,
    /// Whether queries and keys get rotary embeddings.
    #[config(default = false)]
    pub rope: bool,
    /// How scores become weights.
    #[config(default = "AttnSoftmax::Softmax")]
    pub softmax: AttnSoftmax,
    /// Bias added to the scores by distance.
    #[config(default = "AttnBias::None")]
    pub bias: AttnBias,
    /// Kernel of a depthwise causal conv between the MLP's layers (0: none).
    #[config(default = 0)]
    pub mlp_conv: usize,
}

impl AttentionConfig {
    /// Initialises the block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AttentionBlock<B> {
        assert!(
            self.d_model.is_multiple_of(self.n_heads),
            "d_model must be divisible by n_heads"
        );
        let d = self.d_model;
        let heads = self.n_heads;
        let ssmax_scale = (self.softmax == AttnSoftmax::Ssmax)
            .then(|| Param::from_tensor(Tensor::full([heads], ssmax_init(), device)));
        let rel_bias = (self.bias == AttnBias::Learned)
            .then(|| Param::from_tensor(Tensor::zeros([heads, BIAS_BUCKETS], device)));
        let hidden = self.mlp_ratio * d;
        // The identity at first (last tap 1): the block starts as the plain MLP.
        let (mlp_conv_weight, mlp_conv_bias) = match self.mlp_conv {
            0 => (None, None),
            k => {
                let mut w = vec![0.0f32; hidden * k];
                (0..hidden).for_each(|c| w[c * k + k - 1] = 1.0);
                let w = Tensor::from_data(TensorData::new(w, [hidden, k]), device);
                (
                    Some(Param::from_tensor(w)),
                    Some(Param::from_tensor(Tensor::zeros([hidden], device))),
                )
            }
        };
        AttentionBlock {
            norm1: RmsNormConfig::new(d).with_epsilon(1e-5).init(device),
            qkv: LinearConfig::new(d, 3 * d).with_bias(false).init(device),
            out: LinearConfig::new(d, d).with_bias(false).init(device),
            norm2: RmsNormConfig::new(d).with_epsilon(1e-5).init(device),
            fc1: LinearConfig::new(d, self.mlp_ratio * d).init(device),
            fc2: LinearConfig::new(self.mlp_ratio * d, d).init(device),
            ssmax_scale,
            rel_bias,
            mlp_conv_weight,
            mlp_conv_bias,
            n_heads: self.n_heads,
            rope: self.rope,
            softmax: self.softmax,
            bias: self.bias,
        }
    }
}

/// `x = x + MHA(RMSNorm(x)); x = x + MLP(RMSNorm(x))`.
#[derive(Module, Debug)]
pub struct AttentionBlock<B: Backend> {
    /// Pre-attention norm.
    pub norm1: RmsNorm<B>,
    /// Fused Q, K, V projection `[d, 3d]`.
    pub qkv: Linear<B>,
    /// Output projection `[d, d]`.
    pub out: Linear<B>,
    /// Pre-MLP norm.
    pub norm2: RmsNorm<B>,
    /// MLP up projection.
    pub fc1: Linear<B>,
    /// MLP down projection.
    pub fc2: Linear<B>,
    /// `attn_softmax = "ssmax"`: the learned `s_h` per head `[heads]`.
    pub ssmax_scale: Option<Param<Tensor<B, 1>>>,
    /// `attn_bias = "learned"`: the bias per head and distance bucket `[heads, BIAS_BUCKETS]`.
    pub rel_bias: Option<Param<Tensor<B, 2>>>,
    /// `mlp_conv = k`: the depthwise causal conv between the MLP's layers `[mlp·d, k]`.
    pub mlp_conv_weight: Option<Param<Tensor<B, 2>>>,
    /// Its bias `[mlp·d]`.
    pub mlp_conv_bias: Option<Param<Tensor<B, 1>>>,
    n_heads: usize,
    rope: bool,
    #[module(skip)]
    softmax: AttnSoftmax,
    #[module(skip)]
    bias: AttnBias,
}

impl<B: Backend> AttentionBlock<B> {
    /// Attention heads.
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// Whether queries and keys get rotary embeddings.
    pub fn rope(&self) -> bool {
        self.rope
    }

    /// The attention variant (`attn_softmax`, `attn_bias`).
    pub fn variant(&self) -> Variant {
        Variant {
            softmax: self.softmax,
            bias: self.bias,
        }
    }
}

impl<B: ScanBackend> AttentionBlock<B> {
    /// `[batch, L, d_model] → [batch, L, d_model]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.attention(rms_norm(&self.norm1, x));
        let h = linear_gelu(&self.fc1, rms_norm(&self.norm2, x.clone())); // [batch, L, mlp·d]
        let h = match (&self.mlp_conv_weight, &self.mlp_conv_bias) {
            (Some(w), Some(b)) => causal_conv(h, w.val(), b.val()), // [batch, L, mlp·d]
            _ => h,
        };
        x + linear(&self.fc2, h)
    }

    /// Causal multi-head self-attention: `[batch, L, d] → [batch, L, d]`. On host backends
    /// the core (RoPE, scores, softmax, values) is one fused op
    /// ([`crate::fused::causal_attention`]); elsewhere [`Self::attention_device`] (kernels on
    /// CUDA). The composed tensor ops of [`Self::attention_composed`] are the tests' reference.
    pub fn attention(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if !B::HOST_KERNELS {
            return self.attention_device(x);
        }
        let qkv = linear(&self.qkv, x); // [batch, L, 3d]
        let options = AttentionOptions {
            heads: self.n_heads,
            rope: self.rope,
            variant: self.variant(),
            scale: self.ssmax_scale.as_ref().map(Param::val),
            table: self.rel_bias.as_ref().map(Param::val),
        };
        let o = crate::fused::causal_attention(qkv, options); // [batch, L, d]
        linear(&self.out, o) // [batch, L, d]
    }

    /// [`Self::attention`] on device backends: [`crate::fused::device_attention`], causal
    /// softmax attention with its own backward. On CubeCL backends (CUDA) both directions are
    /// kernels that never hold the `[L, L]` scores (`crate::attention_cubecl`), in training
    /// and in evaluation; elsewhere it is composed of tensor ops.
    pub fn attention_device(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if self.variant() != Variant::PLAIN {
            // The kernels are softmax attention: the variants run as tensor ops.
            return self.attention_composed(x);
        }
        let [batch, len, d] = x.dims();
        let (q, k, v) = self.heads(x); // [batch, H, L, dh] each
        let o = crate::fused::device_attention(q, k, v); // [batch, H, L, dh]
        self.out.forward(o.swap_dims(1, 2).reshape([batch, len, d])) // [batch, L, d]
    }

    /// q, k (rotated when RoPE) and v `[batch, H, L, dh]` of the input `[batch, L, d]`.
    fn heads(&self, x: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, len, d] = x.dims();
        let (h, dh) = (self.n_heads, d / self.n_heads);
        let device = x.device();
        let qkv = self.qkv.forward(x); // [batch, L, 3d]
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * d, d)
                .reshape([batch, len, h, dh])
                .swap_dims(1, 2) // [batch, H, L, dh]
        };
        let (mut q, mut k, v) = (split(0), split(1), split(2));
        if self.rope {
            let (cos, sin) = rope_tables::<B>(len, dh, &device); // [1, 1, L, dh/2] each
            let (cos, sin) = (cos.cast(q.dtype()), sin.cast(q.dtype()));
            q = apply_rope(q, cos.clone(), sin.clone());
            k = apply_rope(k, cos, sin);
        }
        (q, k, v)
    }

    /// [`Self::attention`] from tensor ops, materialising the `[batch, H, L, L]` scores: the
    /// reference every other path is tested against, variants included.
    pub fn attention_composed(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, len, d] = x.dims();
        let (h, dh) = (self.n_heads, d / self.n_heads);
        let device = x.device();
        let (q, k, v) = self.heads(x); // [batch, H, L, dh] each
        // Constants built here follow the activations' dtype (bf16 under `precision`).
        let dtype = q.dtype();
        let mask = || causal_mask::<B>(len, &device).cast(dtype);
        let mut scores = q.matmul(k.swap_dims(2, 3)) / (dh as f64).sqrt(); // [batch, H, L, L]
        if let Some(bias) = self.score_bias(len, &device) {
            scores = scores + bias.cast(dtype); // [batch, H, L, L]
        }
        // ln n_i, n_i = i + 1 positions attended by row i.
        let ln_n = || {
            let v: Vec<f32> = (0..len).map(|i| ((i + 1) as f32).ln()).collect();
            Tensor::<B, 4>::from_data(TensorData::new(v, [1, 1, len, 1]), &device).cast(dtype)
        };
        if let Some(s) = &self.ssmax_scale {
            scores = scores * (s.val().reshape([1, h, 1, 1]) * ln_n()); // [batch, H, L, L]
        }
        let attn = match self.softmax {
            AttnSoftmax::Softmax | AttnSoftmax::Ssmax => softmax(scores + mask(), 3),
            AttnSoftmax::Softmax1 => {
                // exp(z) / (1 + Σ exp(z)), shifted by m = max(0, max_j z) for range.
                let z = scores + mask();
                let m = z.clone().max_dim(3).clamp_min(0.0); // [batch, H, L, 1]
                let e = (z - m.clone()).exp();
                let total = e.clone().sum_dim(3) + m.neg().exp(); // [batch, H, L, 1]
                e / total
            }
            AttnSoftmax::Sigmoid => {
                let below = mask().greater_elem(-1.0).float().cast(dtype); // 1 where j ≤ i
                sigmoid(scores - ln_n()) * below
            }
        }; // [batch, H, L, L]
        let o = attn.matmul(v); // [batch, H, L, dh]
        self.out.forward(o.swap_dims(1, 2).reshape([batch, len, d])) // [batch, L, d]
    }

    /// The variant's bias by distance `[1, H, L, L]` (zero above the diagonal), if any.
    fn score_bias(&self, len: usize, device: &B::Device) -> Option<Tensor<B, 4>> {
        let h = self.n_heads;
        match self.bias {
            AttnBias::None => None,
            AttnBias::Alibi => {
                let mut b = vec![0.0f32; h * len * len];
                for head in 0..h {
                    let slope = alibi_slope(head, h);
                    for i in 0..len {
                        for j in 0..=i {
                            b[(head * len + i) * len + j] = -slope * (i - j) as f32;
                        }
                    }
                }
                Some(Tensor::from_data(
                    TensorData::new(b, [1, h, len, len]),
                    device,
                ))
            }
            AttnBias::Learned => {
                let table = self
                    .rel_bias
                    .as_ref()
                    .expect("learned bias has its table")
                    .val();
                let idx: Vec<i64> = (0..len)
                    .flat_map(|i| (0..len).map(move |j| bucket(i.saturating_sub(j)) as i64))
                    .collect();
                let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [len * len]), device);
                Some(table.select(1, idx).reshape([1, h, len, len]))
            }
        }
    }
}

/// Additive causal mask `[1, 1, L, L]`: 0 on and below the diagonal, −1e9 above.
fn causal_mask<B: Backend>(len: usize, device: &B::Device) -> Tensor<B, 4> {
    let mut m = vec![0.0f32; len * len];
    for i in 0..len {
        for j in i + 1..len {
            m[i * len + j] = -1e9;
        }
    }
    Tensor::from_data(TensorData::new(m, [1, 1, len, len]), device)
}

/// Rotary tables `cos, sin` of shape `[1, 1, L, dh/2]` (the fused op's, as tensors).
fn rope_tables<B: Backend>(
    len: usize,
    dh: usize,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let half = dh / 2;
    let (cos, sin) = crate::fused::rope_tables(len, dh);
    (
        Tensor::from_data(TensorData::new(cos, [1, 1, len, half]), device),
        Tensor::from_data(TensorData::new(sin, [1, 1, len, half]), device),
    )
}

/// `[batch, H, L, dh] → same`, rotating the two halves of each head.
fn apply_rope<B: Backend>(x: Tensor<B, 4>, cos: Tensor<B, 4>, sin: Tensor<B, 4>) -> Tensor<B, 4> {
    let dh = x.dims()[3];
    let half = dh / 2;
    let x1 = x.clone().narrow(3, 0, half); // [batch, H, L, dh/2]
    let x2 = x.narrow(3, half, half); // [batch, H, L, dh/2]
    let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
    let r2 = x1 * sin + x2 * cos;
    Tensor::cat(vec![r1, r2], 3) // [batch, H, L, dh]
}

/// Sinusoidal absolute position table `[1, L, d]`.
pub fn sinusoidal_positions<B: Backend>(len: usize, d: usize, device: &B::Device) -> Tensor<B, 3> {
    let mut pe = vec![0.0f32; len * d];
    for p in 0..len {
        for i in 0..d {
            let freq = 10000f64.powf(-((i / 2 * 2) as f64) / d as f64);
            let angle = p as f64 * freq;
            pe[p * d + i] = if i % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    Tensor::from_data(TensorData::new(pe, [1, len, d]), device)
}
