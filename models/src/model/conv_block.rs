//! The gated depthwise-conv mixer block, layer letter `C` (`[model] pattern`, and the
//! `contrast` preset): a short causal conv with a multiplicative gate mixes the sequence,
//! then the attention block's MLP. `x = x + W_out(silu(conv(u)) ⊙ silu(g))` with
//! `[u, g] = W_in·RMSNorm(x)`; `x = x + MLP(RMSNorm(x))`. The conv is Mamba's (same host
//! op), without the SSM: a cheap local mixer to put beside SSM and attention layers.
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Tensor, backend::Backend};

use crate::fused::{
    ScanBackend, causal_conv_silu, causal_conv_silu_reference, gelu, linear, linear_gelu, rms_norm,
};

/// Configuration of one conv mixer block.
#[derive(Config, Debug)]
pub struct ConvBlockConfig {
    /// Model width.
    pub d_model: usize,
    /// Conv kernel (the model's `d_conv`).
    #[config(default = "super::defaults::D_CONV")]
    pub d_conv: usize,
    /// MLP hidden size = mlp_ratio · d_model.
    #[config(default = "super::defaults::MLP_RATIO")]
    pub mlp_ratio: usize,
}

impl ConvBlockConfig {
    /// Initialises the block (the conv as Mamba's: uniform in ±1/√K).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvBlock<B> {
        let (d, k) = (self.d_model, self.d_conv);
        let bound = 1.0 / (k as f64).sqrt();
        let conv = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        ConvBlock {
            norm1: RmsNormConfig::new(d).with_epsilon(1e-5).init(device),
            in_proj: LinearConfig::new(d, 2 * d).with_bias(false).init(device),
            conv_weight: conv.init([d, k], device),
            conv_bias: conv.init([d], device),
            out_proj: LinearConfig::new(d, d).with_bias(false).init(device),
            norm2: RmsNormConfig::new(d).with_epsilon(1e-5).init(device),
            fc1: LinearConfig::new(d, self.mlp_ratio * d).init(device),
            fc2: LinearConfig::new(self.mlp_ratio * d, d).init(device),
        }
    }
}

/// Gated conv mixer + MLP, pre-norm residual.
#[derive(Module, Debug)]
pub struct ConvBlock<B: Backend> {
    /// Pre-mixer norm.
    pub norm1: RmsNorm<B>,
    /// `[d, 2d]`: the conv's input `u` and the gate `g`.
    pub in_proj: Linear<B>,
    /// Depthwise conv `[d, K]`.
    pub conv_weight: Param<Tensor<B, 2>>,
    /// `[d]`.
    pub conv_bias: Param<Tensor<B, 1>>,
    /// `[d, d]`.
    pub out_proj: Linear<B>,
    /// Pre-MLP norm.
    pub norm2: RmsNorm<B>,
    /// MLP up projection.
    pub fc1: Linear<B>,
    /// MLP down projection.
    pub fc2: Linear<B>,
}

impl<B: ScanBackend> ConvBlock<B> {
    /// `[batch, L, d] → [batch, L, d]`, through the fused host ops where the backend has them.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let d = x.dims()[2];
        let ug = linear(&self.in_proj, rms_norm(&self.norm1, x.clone())); // [batch, L, 2d]
        let u = ug.clone().narrow(2, 0, d); // [batch, L, d]
        let g = ug.narrow(2, d, d); // [batch, L, d]
        let h = causal_conv_silu(u, self.conv_weight.val(), self.conv_bias.val()) * silu(g);
        let x = x + linear(&self.out_proj, h); // [batch, L, d]
        let m = linear_gelu(&self.fc1, rms_norm(&self.norm2, x.clone())); // [batch, L, mlp·d]
        x + linear(&self.fc2, m)
    }

    /// [`Self::forward`] from burn's modules and the conv's tensor-op composition: the tests'
    /// reference. (GELU stays the exact host op: burn's backward is the tanh approximation's.)
    pub fn forward_reference(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let d = x.dims()[2];
        let ug = self.in_proj.forward(self.norm1.forward(x.clone())); // [batch, L, 2d]
        let u = ug.clone().narrow(2, 0, d);
        let g = ug.narrow(2, d, d);
        let h =
            causal_conv_silu_reference(u, self.conv_weight.val(), self.conv_bias.val()) * silu(g);
        let x = x + self.out_proj.forward(h);
        let m = gelu(self.fc1.forward(self.norm2.forward(x.clone())));
        x + self.fc2.forward(m)
    }
}
