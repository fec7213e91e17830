//! Causal softmax attention on device backends (the plain variant of the attention block on
//! CUDA), as [`ScanBackend::device_attention_forward`] and `_backward` compute it: from tensor
//! ops here (the default, which holds the `[L, L]` scores; it is also the reference the CubeCL
//! kernels in `crate::attention_cubecl` are tested against), without the scores there.
//!
//! Shapes: `q`, `k`, `v`, `o`, `dout` `[batch, H, L, dh]`; `lse` `[batch, H, L]`, the
//! log-sum-exp of each query row's scaled scores, which is all the backward needs to rebuild
//! the softmax.
use burn::tensor::{Tensor, TensorData, TensorPrimitive, backend::Backend, ops::FloatTensor};

use super::ScanBackend;
use crate::precision::accumulation_dtype;

fn wrap<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// `q·kᵀ/√dh` with −1e9 above the diagonal: `[batch, H, L, L]`.
fn masked_scores<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, len, dh] = q.dims();
    let device = q.device();
    let mut m = vec![0.0f32; len * len];
    for i in 0..len {
        for j in i + 1..len {
            m[i * len + j] = -1e9;
        }
    }
    let mask = Tensor::<B, 4>::from_data(TensorData::new(m, [1, 1, len, len]), &device);
    let scores = q.matmul(k.swap_dims(2, 3)) / (dh as f64).sqrt(); // [batch, H, L, L]
    let dtype = scores.dtype();
    scores + mask.cast(dtype)
}

/// `(o, lse)` from tensor ops (half inputs computed in f32; `o` returned in their dtype).
pub(crate) fn forward_reference<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (q, k, v) = (wrap::<B, 4>(q), wrap::<B, 4>(k), wrap::<B, 4>(v));
    let dtype = q.dtype();
    let wide = accumulation_dtype(dtype);
    let (q, k, v) = (q.cast(wide), k.cast(wide), v.cast(wide));
    let [batch, heads, len, _] = q.dims();
    let scores = masked_scores(q, k); // [batch, H, L, L]
    let max = scores.clone().max_dim(3); // [batch, H, L, 1]
    let lse = (scores.clone() - max.clone()).exp().sum_dim(3).log() + max; // [batch, H, L, 1]
    let p = (scores - lse.clone()).exp(); // [batch, H, L, L]
    let o = p.matmul(v).cast(dtype); // [batch, H, L, dh]
    (prim(o), prim(lse.reshape([batch, heads, len])))
}

/// `[dq, dk, dv]` of `sum(o ⊙ dout)` from tensor ops, the softmax rebuilt from `lse`.
pub(crate) fn backward_reference<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    o: FloatTensor<B>,
    lse: FloatTensor<B>,
    dout: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let (q, k, v) = (wrap::<B, 4>(q), wrap::<B, 4>(k), wrap::<B, 4>(v));
    let (o, dout) = (wrap::<B, 4>(o), wrap::<B, 4>(dout));
    let dtype = q.dtype();
    let wide = accumulation_dtype(dtype);
    let [q, k, v, o, dout] = [q, k, v, o, dout].map(|t| t.cast(wide));
    let [batch, heads, len, dh] = q.dims();
    let lse = wrap::<B, 3>(lse).reshape([batch, heads, len, 1]).cast(wide);
    let scale = 1.0 / (dh as f64).sqrt();
    let p = (masked_scores(q.clone(), k.clone()) - lse).exp(); // [batch, H, L, L]
    let dv = p.clone().swap_dims(2, 3).matmul(dout.clone()); // [batch, H, L, dh]
    let dp = dout.clone().matmul(v.swap_dims(2, 3)); // [batch, H, L, L]
    let rows = (dout * o).sum_dim(3); // [batch, H, L, 1]: Σ_d dout·o = Σ_j p·dp
    let ds = p * (dp - rows); // [batch, H, L, L]
    let dq = ds.clone().matmul(k) * scale; // [batch, H, L, dh]
    let dk = ds.swap_dims(2, 3).matmul(q) * scale; // [batch, H, L, dh]
    [dq, dk, dv].map(|g| prim(g.cast(dtype)))
}

/// Causal softmax attention `softmax(q·kᵀ/√dh + mask)·v` of `q`, `k`, `v` `[batch, H, L, dh]`
/// on a device backend (tracked by autodiff when `B` is `Autodiff`): on CubeCL backends a
/// kernel that never holds the `[L, L]` scores, forward and backward.
pub fn device_attention<B: ScanBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let (qd, kd, vd) = (q.dims(), k.dims(), v.dims());
    assert!(
        qd == kd && qd == vd,
        "device_attention: q {qd:?}, k {kd:?} and v {vd:?} must have one shape"
    );
    wrap(B::device_attention(prim(q), prim(k), prim(v))) // [batch, H, L, dh]
}
