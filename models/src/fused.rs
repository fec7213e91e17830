//! The engine's fused ops: each is one autodiff node with a host kernel and a hand-written
//! backward on the CPU backends — the whole Mamba block ([`mamba_block`]), the selective
//! scan ([`selective_scan`], [`gated_scan`]), the causal conv ([`causal_conv_silu`]),
//! RMSNorm, the embedding and the head with its loss. On other backends (CUDA) the scan
//! runs as CubeCL kernels and the rest as burn ops.
//!
//! The selective scan (the S6 recurrence):
//! `h_t = exp(Δ_t·A) ⊙ h_{t−1} + Δ_t·B_t·u_t`, `y_t = C_t·h_t + D·u_t`, per (batch, channel),
//! with the state `h` of size `N` per channel. Shapes everywhere in this module:
//! `u`, `delta`: `[batch, L, d_inner]`; `a`: `[d_inner, N]`; `b`, `c`: `[batch, L, N]`;
//! `d`: `[d_inner]`; `y`: `[batch, L, d_inner]`.
//!
//! * [`ScanBackend`] is a backend extension: its default methods pull the tensors to the host
//!   and run a fused loop per (batch, channel) that never materialises `[batch, L, d_inner, N]`.
//! * `Autodiff<B>` implements it with a custom backward node, so training never backpropagates
//!   through an `L`-step loop of small tensor ops: the backward recomputes each channel's
//!   states `[L, N]` into a local buffer and runs one reverse scan.
//! * [`selective_scan_reference`] is the plain sequential tensor-op version used by the tests.
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::activation::silu;
use burn::tensor::{
    FloatDType, Int, Tensor, TensorData, TensorMetadata, TensorPrimitive,
    backend::{AutodiffBackend, Backend},
    ops::{FloatTensor, IntTensor},
};
use std::sync::{Arc, Mutex};

use crate::math::softplus;

mod attention;
mod autodiff;
mod block;
mod bridge;
mod conv;
mod device_attention;
mod fill;
mod gelu;
mod gemm;
mod host;
mod linear;
mod loss;
mod pool;
mod rows;
mod scores;
pub(crate) use attention::rope_tables;
use attention::{AttentionDims, HostAttention};
use block::{BlockDims, HostBlock, slot};
use bridge::*;
pub(crate) use bridge::{download, host_values};
use conv::ConvSilu;
pub use device_attention::device_attention;
pub(crate) use device_attention::{backward_reference, forward_reference};
use gelu::HostGelu;
use host::{GatedScan, HostInputs};
use linear::HostLinear;
use loss::HostHeadLoss;
pub use pool::StepPool;
use rows::{HostEmbedding, HostRmsNorm};
pub use scores::{
    AttnBias, AttnSoftmax, BIAS_BUCKETS, EXACT_BUCKETS, MAX_DISTANCE, Variant, alibi_slope, bucket,
    ssmax_init,
};
pub(crate) use scores::{HeadScores, Tables};

/// A backend that can run the selective scan. The default methods run the fused host loop,
/// which works on every backend (on a GPU backend it copies through host memory).
pub trait ScanBackend: Backend {
    /// True on backends whose tensors live in host memory: there [`gated_scan`] and
    /// [`causal_conv_silu`] run fused host kernels with hand-written backwards; elsewhere they
    /// are composed of tensor ops around [`ScanBackend::selective_scan`].
    const HOST_KERNELS: bool = false;

    /// Forward scan; see the module docs for shapes.
    fn selective_scan(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let device = Self::float_device(&u);
        let inputs = HostInputs::load::<Self>(u, delta, a, b, c, d);
        let (y, _) = inputs.forward();
        upload::<Self, 3>(y, [inputs.batch, inputs.len, inputs.channels], &device)
    }

    /// Gradients of `sum(y ⊙ grad)` with respect to `[u, delta, a, b, c, d]`.
    #[allow(clippy::too_many_arguments)]
    fn selective_scan_backward(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 6] {
        let device = Self::float_device(&u);
        let inputs = HostInputs::load::<Self>(u, delta, a, b, c, d);
        let (grad, _) = download::<Self, 3>(grad);
        let g = inputs.backward(&grad);
        let dims = [inputs.batch, inputs.len, inputs.channels];
        upload_grads::<Self>(g, dims, inputs.state, &device)
    }

    /// Causal softmax attention of `q`, `k`, `v` `[batch, H, L, dh]` → `o` (see
    /// [`device_attention`]). `Autodiff` records its backward node here.
    fn device_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::device_attention_forward(q, k, v).0
    }

    /// `(o, lse)` of [`ScanBackend::device_attention`], `lse` `[batch, H, L]` the rows'
    /// log-sum-exp. Default: tensor ops (holding the `[L, L]` scores); CubeCL backends run a
    /// kernel (`crate::attention_cubecl`).
    fn device_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        forward_reference::<Self>(q, k, v)
    }

    /// `[dq, dk, dv]` of `sum(o ⊙ dout)` for [`ScanBackend::device_attention_forward`]'s
    /// outputs.
    fn device_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        o: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        backward_reference::<Self>(q, k, v, o, lse, dout)
    }

    /// Host kernel of [`gated_scan`]; called only when `HOST_KERNELS`.
    #[allow(clippy::too_many_arguments)]
    fn gated_scan_host(
        u: FloatTensor<Self>,
        delta_raw: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        z: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        gated_on_host::<Self>(u, delta_raw, a, b, c, d, z).1
    }

    /// Host kernel of [`causal_conv_silu`] (and [`causal_conv`], `silu` false); called only
    /// when `HOST_KERNELS`.
    fn conv_silu_host(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        silu: bool,
        dilation: usize,
    ) -> FloatTensor<Self> {
        conv_on_host::<Self>(x, w, bias, silu, dilation).1
    }

    /// Host kernel of [`mamba_block`]: `inputs` in [`MambaBlockParams`] order, `x` first.
    fn mamba_block_host(
        inputs: [FloatTensor<Self>; 13],
        eps: f64,
        options: BlockOptions,
        state: &BlockState,
    ) -> FloatTensor<Self> {
        block_on_host::<Self>(inputs, eps, options, state).1
    }

    /// Host kernel of [`rms_norm`]: `x` `[batch, L, d]`, `gamma` `[d]`.
    fn rms_norm_host(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        rms_norm_on_host::<Self>(x, gamma, eps).1
    }

    /// Host kernel of [`causal_attention`]: `qkv` `[batch, L, 3·d]` → `[batch, L, d]`, with
    /// the variant's parameters `scale` `[heads]` and `table` `[heads, BIAS_BUCKETS]`.
    fn attention_host(
        qkv: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        table: FloatTensor<Self>,
        heads: usize,
        rope: bool,
        variant: Variant,
    ) -> FloatTensor<Self> {
        attention_on_host::<Self>(qkv, scale, table, heads, rope, variant).1
    }

    /// Host kernel of [`linear`] and [`linear_gelu`]: `x` `[batch, L, d_in]`, `w`
    /// `[d_in, d_out]`, `b` `[d_out]`.
    fn linear_host(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        gelu: bool,
    ) -> FloatTensor<Self> {
        linear_on_host::<Self>(x, w, b, gelu).1
    }

    /// Host kernel of [`gelu`]: `x` `[batch, L, n]`.
    fn gelu_host(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_on_host::<Self>(x).1
    }

    /// Host kernel of [`embedding`]: `weights` `[vocab, d]`, `tokens` `[batch, L]`.
    fn embedding_host(weights: FloatTensor<Self>, tokens: IntTensor<Self>) -> FloatTensor<Self> {
        embedding_on_host::<Self>(weights, tokens).1
    }

    /// Host kernel of [`head_loss`]: `x` `[batch, L, d]`, `w` `[d, vocab]`, `targets` and
    /// `weights` `[batch, L]`; returns `[loss, correct]`, each `[1]`.
    fn head_loss_host(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        head_loss_on_host::<Self>(x, w, targets, weights).1
    }
}

impl ScanBackend for burn::backend::NdArray {
    const HOST_KERNELS: bool = true;
}
impl ScanBackend for burn::backend::Flex {
    const HOST_KERNELS: bool = true;
}
// `burn::backend::Cuda` (and `Wgpu`, test-only) run CubeCL kernels: see `crate::scan_cubecl`.

/// Runs the selective scan on any [`ScanBackend`] (tracked by autodiff when `B` is `Autodiff`).
pub fn selective_scan<B: ScanBackend>(
    u: Tensor<B, 3>,     // [batch, L, d_inner]
    delta: Tensor<B, 3>, // [batch, L, d_inner]
    a: Tensor<B, 2>,     // [d_inner, N]
    b: Tensor<B, 3>,     // [batch, L, N]
    c: Tensor<B, 3>,     // [batch, L, N]
    d: Tensor<B, 1>,     // [d_inner]
) -> Tensor<B, 3> {
    check_shapes(
        &u.dims(),
        &delta.dims(),
        &a.dims(),
        &b.dims(),
        &c.dims(),
        &d.dims(),
    );
    let y = B::selective_scan(
        u.into_primitive().tensor(),
        delta.into_primitive().tensor(),
        a.into_primitive().tensor(),
        b.into_primitive().tensor(),
        c.into_primitive().tensor(),
        d.into_primitive().tensor(),
    );
    Tensor::from_primitive(TensorPrimitive::Float(y)) // [batch, L, d_inner]
}

/// The middle of the Mamba mixer: `selective_scan(u, softplus(delta_raw), a, b, c, d) ⊙
/// silu(z)`, with `z`: `[batch, L, d_inner]` and the other shapes as in [`selective_scan`].
/// One fused host op on CPU backends (see [`ScanBackend::HOST_KERNELS`]).
#[allow(clippy::too_many_arguments)]
pub fn gated_scan<B: ScanBackend>(
    u: Tensor<B, 3>,         // [batch, L, d_inner]
    delta_raw: Tensor<B, 3>, // [batch, L, d_inner], before softplus
    a: Tensor<B, 2>,         // [d_inner, N]
    b: Tensor<B, 3>,         // [batch, L, N]
    c: Tensor<B, 3>,         // [batch, L, N]
    d: Tensor<B, 1>,         // [d_inner]
    z: Tensor<B, 3>,         // [batch, L, d_inner]
) -> Tensor<B, 3> {
    if !B::HOST_KERNELS {
        return gated_scan_reference(u, delta_raw, a, b, c, d, z);
    }
    check_shapes(
        &u.dims(),
        &delta_raw.dims(),
        &a.dims(),
        &b.dims(),
        &c.dims(),
        &d.dims(),
    );
    assert_eq!(
        z.dims(),
        u.dims(),
        "gated_scan: z must be [batch, L, d_inner]"
    );
    let y = B::gated_scan_host(
        u.into_primitive().tensor(),
        delta_raw.into_primitive().tensor(),
        a.into_primitive().tensor(),
        b.into_primitive().tensor(),
        c.into_primitive().tensor(),
        d.into_primitive().tensor(),
        z.into_primitive().tensor(),
    );
    Tensor::from_primitive(TensorPrimitive::Float(y)) // [batch, L, d_inner]
}

/// [`gated_scan`] composed of tensor ops around [`selective_scan`].
#[allow(clippy::too_many_arguments)]
pub fn gated_scan_reference<B: ScanBackend>(
    u: Tensor<B, 3>,
    delta_raw: Tensor<B, 3>,
    a: Tensor<B, 2>,
    b: Tensor<B, 3>,
    c: Tensor<B, 3>,
    d: Tensor<B, 1>,
    z: Tensor<B, 3>,
) -> Tensor<B, 3> {
    selective_scan(u, softplus(delta_raw), a, b, c, d) * silu(z)
}

/// Mamba's depthwise causal convolution followed by SiLU: `x`: `[batch, L, d_inner]`,
/// `w`: `[d_inner, K]`, `bias`: `[d_inner]`; left zero padding of `K − 1`, so
/// `pre[t] = bias + Σ_j w[:, j]·x[t + j − (K − 1)]` and the result is `silu(pre)`.
/// One fused host op on CPU backends (see [`ScanBackend::HOST_KERNELS`]).
pub fn causal_conv_silu<B: ScanBackend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 3> {
    causal_conv_silu_dilated(x, w, bias, 1)
}

/// [`causal_conv_silu`] with taps `dilation` steps apart (`[model] conv_dilation`).
pub fn causal_conv_silu_dilated<B: ScanBackend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    dilation: usize,
) -> Tensor<B, 3> {
    if !B::HOST_KERNELS {
        return silu(causal_conv_reference_dilated(x, w, bias, dilation));
    }
    conv_on::<B>(x, w, bias, true, dilation)
}

/// The depthwise causal conv of [`causal_conv_silu`] without the activation (the MLP's
/// `mlp_conv`): one host op where [`ScanBackend::HOST_KERNELS`], tensor ops elsewhere.
pub fn causal_conv<B: ScanBackend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 3> {
    if !B::HOST_KERNELS {
        return causal_conv_reference(x, w, bias);
    }
    conv_on::<B>(x, w, bias, false, 1)
}

fn conv_on<B: ScanBackend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    silu: bool,
    dilation: usize,
) -> Tensor<B, 3> {
    assert_eq!(
        w.dims()[0],
        x.dims()[2],
        "causal_conv: w must be [channels, K]"
    );
    assert_eq!(
        bias.dims()[0],
        x.dims()[2],
        "causal_conv: bias must be [channels]"
    );
    let y = B::conv_silu_host(
        x.into_primitive().tensor(),
        w.into_primitive().tensor(),
        bias.into_primitive().tensor(),
        silu,
        dilation,
    );
    Tensor::from_primitive(TensorPrimitive::Float(y)) // [batch, L, channels]
}

/// [`causal_conv_silu`] composed of tensor ops (pad, `K` shifted multiply-adds, SiLU).
pub fn causal_conv_silu_reference<B: Backend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 3> {
    silu(causal_conv_reference(x, w, bias))
}

/// [`causal_conv`] composed of tensor ops (pad, `K` shifted multiply-adds).
pub fn causal_conv_reference<B: Backend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 3> {
    causal_conv_reference_dilated(x, w, bias, 1)
}

/// [`causal_conv_reference`] with taps `dilation` steps apart.
pub fn causal_conv_reference_dilated<B: Backend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    dilation: usize,
) -> Tensor<B, 3> {
    let [batch, len, di] = x.dims();
    let k = w.dims()[1];
    let reach = (k - 1) * dilation;
    let pad = Tensor::<B, 3>::zeros([batch, reach, di], &x.device()).cast(x.dtype());
    let xp = Tensor::cat(vec![pad, x], 1); // [batch, L + (k − 1)·dilation, channels]
    let mut out = bias.reshape([1, 1, di]); // [1, 1, channels]
    for j in 0..k {
        let wj = w.clone().narrow(1, j, 1).reshape([1, 1, di]);
        out = out + xp.clone().narrow(1, j * dilation, len) * wj; // [batch, L, channels]
    }
    out
}

/// The recurrent state around one [`mamba_block`] call: what the scan starts from and where
/// its final state goes. Both are host buffers `[batch, d_inner, N]` and constants of the op:
/// no gradient flows into the initial state (it is noise or another sequence's detached final
/// state, as `[train] state_init` asks).
#[derive(Debug, Clone, Default)]
pub struct BlockState {
    /// The state before the first step; zeros when `None`.
    pub initial: Option<Arc<Vec<f32>>>,
    /// Receives the state after the last step, when set.
    pub last: Option<Arc<Mutex<Vec<f32>>>>,
}

/// The block's conv settings that its weights' shapes do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOptions {
    /// The convs' dilation (1: contiguous taps).
    pub dilation: usize,
    /// Whether `B` and `C` go through their own causal conv and SiLU (`[model] conv_bc`).
    pub conv_bc: bool,
}

/// The weights of one Mamba residual block (selective variant), as [`mamba_block`] takes them;
/// layouts as the modules store them (see `model::mamba`).
#[derive(Debug, Clone)]
pub struct MambaBlockParams<B: Backend> {
    /// The scan's initial state and final-state sink (see [`BlockState`]).
    pub state: BlockState,
    /// RMSNorm weight `[d_model]`.
    pub norm: Tensor<B, 1>,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// The conv's dilation (1: contiguous taps).
    pub conv_dilation: usize,
    /// `[d_model, 2·d_inner]`.
    pub in_proj: Tensor<B, 2>,
    /// `[d_inner, K]` (`[d_inner, 1]` ones for `conv_kind = "none"`: silu(x) unchanged).
    pub conv_w: Tensor<B, 2>,
    /// `[d_inner]`.
    pub conv_b: Tensor<B, 1>,
    /// The conv over `[B | C]`, `[2N, K]` and `[2N]` (`[model] conv_bc`); `None` when off.
    pub conv_bc: Option<(Tensor<B, 2>, Tensor<B, 1>)>,
    /// `[d_inner, dt_rank + 2N]`.
    pub x_proj: Tensor<B, 2>,
    /// `[dt_rank, d_inner]`.
    pub dt_w: Tensor<B, 2>,
    /// `[d_inner]`.
    pub dt_b: Tensor<B, 1>,
    /// `[d_inner, N]`; `A = −exp(A_log)`.
    pub a_log: Tensor<B, 2>,
    /// `[d_inner]`.
    pub d: Tensor<B, 1>,
    /// `[d_inner, d_model]`.
    pub out_proj: Tensor<B, 2>,
}

/// The whole Mamba residual block `x + mixer(RMSNorm(x))` as one op with a hand-written
/// backward: `x` `[batch, L, d_model]` → `[batch, L, d_model]`. It runs on the host (on a GPU
/// backend it copies through host memory), so `model::mamba` uses it only where
/// [`ScanBackend::HOST_KERNELS`]. Panics on inconsistent shapes.
pub fn mamba_block<B: ScanBackend>(x: Tensor<B, 3>, p: MambaBlockParams<B>) -> Tensor<B, 3> {
    // Shapes are checked where every path reads them: `load_block`.
    let f = |t: Tensor<B, 1>| t.into_primitive().tensor();
    let f2 = |t: Tensor<B, 2>| t.into_primitive().tensor();
    let options = BlockOptions {
        dilation: p.conv_dilation,
        conv_bc: p.conv_bc.is_some(),
    };
    // Untracked placeholders stand in for an absent [B | C] conv (the block ignores them).
    let (bc_w, bc_b) = p.conv_bc.unwrap_or_else(|| {
        let (n2, device) = (2 * p.a_log.dims()[1], p.a_log.device());
        (
            Tensor::zeros([n2, 1], &device),
            Tensor::zeros([n2], &device),
        )
    });
    let inputs = [
        x.into_primitive().tensor(),
        f(p.norm),
        f2(p.in_proj),
        f2(p.conv_w),
        f(p.conv_b),
        f2(p.x_proj),
        f2(p.dt_w),
        f(p.dt_b),
        f2(p.a_log),
        f(p.d),
        f2(p.out_proj),
        f2(bc_w),
        f(bc_b),
    ];
    let y = B::mamba_block_host(inputs, p.norm_eps, options, &p.state);
    Tensor::from_primitive(TensorPrimitive::Float(y)) // [batch, L, d_model]
}

/// `norm.forward(x)` (RMSNorm over the last dimension): one host op with a hand-written
/// backward where [`ScanBackend::HOST_KERNELS`], the module's own forward elsewhere.
pub fn rms_norm<B: ScanBackend>(norm: &RmsNorm<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    if !B::HOST_KERNELS {
        return norm.forward(x);
    }
    let (d, g) = (x.dims()[2], norm.gamma.dims()[0]);
    assert_eq!(d, g, "rms_norm: input has {d} features, the norm's γ {g}");
    let y = B::rms_norm_host(
        x.into_primitive().tensor(),
        norm.gamma.val().into_primitive().tensor(),
        norm.epsilon,
    );
    Tensor::from_primitive(TensorPrimitive::Float(y)) // [batch, L, d]
}

/// What [`causal_attention`] computes besides the plain softmax attention: the heads, RoPE,
/// and the research variants with their parameters (`scale` `[heads]` for ssmax, `table`
/// `[heads, BIAS_BUCKETS]` for the learned bias; `None` where the variant has none).
#[derive(Debug, Clone)]
pub struct AttentionOptions<B: Backend> {
    pub heads: usize,
    pub rope: bool,
    pub variant: Variant,
    pub scale: Option<Tensor<B, 1>>,
    pub table: Option<Tensor<B, 2>>,
}

/// Causal multi-head self-attention from the fused `qkv` projection's output `[batch, L, 3·d]`
/// (q, k, v side by side) to the heads' concatenated output `[batch, L, d]` (before the
/// output projection), with RoPE on q and k when `rope` and the options' variant: one host op
/// with a hand-written backward ([`attention`]) where [`ScanBackend::HOST_KERNELS`]. Callers
/// use it only there; the attention block's composed tensor ops are the reference elsewhere.
/// Panics when the variant needs a parameter the options lack.
pub fn causal_attention<B: ScanBackend>(
    qkv: Tensor<B, 3>,
    options: AttentionOptions<B>,
) -> Tensor<B, 3> {
    assert!(
        B::HOST_KERNELS,
        "causal_attention runs on host backends only"
    );
    let AttentionOptions {
        heads,
        rope,
        variant,
        scale,
        table,
    } = options;
    let device = qkv.device();
    let needs = |what: &str| format!("attention: the {what} variant needs its parameter");
    // Untracked zeros stand in for the parameters a variant does not have (no gradient).
    let scale = match (variant.softmax, scale) {
        (_, Some(s)) => s,
        (AttnSoftmax::Ssmax, None) => panic!("{}", needs("ssmax")),
        (_, None) => Tensor::zeros([heads], &device),
    };
    let table = match (variant.bias, table) {
        (_, Some(t)) => t,
        (AttnBias::Learned, None) => panic!("{}", needs("learned bias")),
        (_, None) => Tensor::zeros([heads, BIAS_BUCKETS], &device),
    };
    let o = B::attention_host(
        qkv.into_primitive().tensor(),
        scale.into_primitive().tensor(),
        table.into_primitive().tensor(),
        heads,
        rope,
        variant,
    );
    Tensor::from_primitive(TensorPrimitive::Float(o)) // [batch, L, d]
}

/// `linear.forward(x)` (`x·W + b`) for `x` `[batch, L, d_in]`: one host op with a hand-written
/// backward where [`ScanBackend::HOST_KERNELS`] ([`linear`] module), the module's own forward
/// elsewhere.
pub fn linear<B: ScanBackend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    if !B::HOST_KERNELS {
        return linear.forward(x);
    }
    linear_on::<B>(linear, x, false)
}

/// `gelu(linear.forward(x))` (the exact GELU of [`gelu`]): one host op with a hand-written
/// backward where [`ScanBackend::HOST_KERNELS`], burn ops elsewhere.
pub fn linear_gelu<B: ScanBackend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    if !B::HOST_KERNELS {
        return burn::tensor::activation::gelu(linear.forward(x));
    }
    linear_on::<B>(linear, x, true)
}

fn linear_on<B: ScanBackend>(linear: &Linear<B>, x: Tensor<B, 3>, gelu: bool) -> Tensor<B, 3> {
    let [d_in, d_out] = linear.weight.dims();
    assert_eq!(
        x.dims()[2],
        d_in,
        "linear: input has {} features, the weight {d_in} rows",
        x.dims()[2]
    );
    // A layer without bias adds an untracked zero bias (it takes no gradient).
    let bias = match &linear.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([d_out], &x.device()),
    };
    let y = B::linear_host(
        x.into_primitive().tensor(),
        linear.weight.val().into_primitive().tensor(),
        bias.into_primitive().tensor(),
        gelu,
    );
    Tensor::from_primitive(TensorPrimitive::Float(y)) // [batch, L, d_out]
}

/// GELU (the exact, erf form) of `x` `[batch, L, n]`: one host op with a hand-written
/// backward where [`ScanBackend::HOST_KERNELS`] ([`gelu`] module), burn's `gelu` elsewhere.
pub fn gelu<B: ScanBackend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    if !B::HOST_KERNELS {
        return burn::tensor::activation::gelu(x);
    }
    let y = B::gelu_host(x.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(y)) // [batch, L, n]
}

/// `embedding.forward(tokens)`: `[batch, L]` token ids → `[batch, L, d]` rows of the weights,
/// one host op with a hand-written backward where [`ScanBackend::HOST_KERNELS`], the module's
/// own forward elsewhere. Panics on a token outside the vocabulary.
pub fn embedding<B: ScanBackend>(
    embedding: &Embedding<B>,
    tokens: Tensor<B, 2, Int>,
) -> Tensor<B, 3> {
    if !B::HOST_KERNELS {
        return embedding.forward(tokens);
    }
    let y = B::embedding_host(
        embedding.weight.val().into_primitive().tensor(),
        tokens.into_primitive(),
    );
    Tensor::from_primitive(TensorPrimitive::Float(y)) // [batch, L, d]
}

/// The LM head `x·W` (no bias) and [`crate::math::masked_loss`] on its logits as one host op
/// with a hand-written backward where [`ScanBackend::HOST_KERNELS`] (elsewhere those two from
/// tensor ops): `x` `[batch, L, d]`, `weight` `[d, vocab]`, `targets` and `weights`
/// `[batch, L]`; returns `(loss, correct)`, each `[1]`. Panics on mismatched shapes and, on the
/// host, on a target outside the vocabulary.
pub fn head_loss<B: ScanBackend>(
    x: Tensor<B, 3>,
    weight: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let ([batch, len, d], [wd, _]) = (x.dims(), weight.dims());
    assert_eq!(
        d, wd,
        "head_loss: input has {d} features, the head weight {wd} rows"
    );
    for (what, dims) in [("targets", targets.dims()), ("weights", weights.dims())] {
        assert_eq!(
            dims,
            [batch, len],
            "head_loss: {what} are {dims:?}, the input [{batch}, {len}, {d}]"
        );
    }
    if !B::HOST_KERNELS {
        // The loss in f32 whatever the activations' dtype (bf16 under `precision`).
        let logits = x.matmul(weight.unsqueeze::<3>()).cast(FloatDType::F32); // [batch, L, vocab]
        return crate::math::masked_loss(logits, targets, weights);
    }
    let [loss, correct] = B::head_loss_host(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        targets.into_primitive(),
        weights.into_primitive().tensor(),
    );
    let wrap = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
    (wrap(loss), wrap(correct))
}

fn check_shapes(
    u: &[usize; 3],
    delta: &[usize; 3],
    a: &[usize; 2],
    b: &[usize; 3],
    c: &[usize; 3],
    d: &[usize; 1],
) {
    assert_eq!(
        u, delta,
        "selective_scan: u and delta must have the same shape"
    );
    assert_eq!(a[0], u[2], "selective_scan: a must be [d_inner, N]");
    assert_eq!(
        b,
        &[u[0], u[1], a[1]],
        "selective_scan: b must be [batch, L, N]"
    );
    assert_eq!(c, b, "selective_scan: c must be [batch, L, N]");
    assert_eq!(d[0], u[2], "selective_scan: d must be [d_inner]");
}

/// Plain sequential tensor-op scan: `L` steps of small tensor ops (slow; for tests only).
pub fn selective_scan_reference<B: Backend>(
    u: Tensor<B, 3>,     // [batch, L, d_inner]
    delta: Tensor<B, 3>, // [batch, L, d_inner]
    a: Tensor<B, 2>,     // [d_inner, N]
    b: Tensor<B, 3>,     // [batch, L, N]
    c: Tensor<B, 3>,     // [batch, L, N]
    d: Tensor<B, 1>,     // [d_inner]
) -> Tensor<B, 3> {
    let [bt, l, ch] = u.dims();
    let n = a.dims()[1];
    let device = u.device();
    let a3 = a.unsqueeze_dim::<3>(0); // [1, d_inner, N]
    let d2 = d.unsqueeze_dim::<2>(0); // [1, d_inner]
    let mut h = Tensor::<B, 3>::zeros([bt, ch, n], &device);
    let mut ys = Vec::with_capacity(l);
    for t in 0..l {
        let ut = u.clone().narrow(1, t, 1).reshape([bt, ch, 1]);
        let dt = delta.clone().narrow(1, t, 1).reshape([bt, ch, 1]);
        let bt_ = b.clone().narrow(1, t, 1); // [batch, 1, N]
        let ct = c.clone().narrow(1, t, 1); // [batch, 1, N]
        let decay = (dt.clone() * a3.clone()).exp(); // [batch, d_inner, N]
        h = decay * h + dt * bt_ * ut.clone(); // [batch, d_inner, N]
        let y = (h.clone() * ct).sum_dim(2).reshape([bt, ch]) + ut.reshape([bt, ch]) * d2.clone();
        ys.push(y.unsqueeze_dim::<3>(1)); // [batch, 1, d_inner]
    }
    Tensor::cat(ys, 1)
}
