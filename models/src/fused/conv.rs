//! Host kernel of Mamba's depthwise causal convolution fused with SiLU, with its backward:
//! `pre[t, k] = bias[k] + Σ_j w[k, j]·x[t + j − (K − 1), k]` (zero left padding),
//! `out = silu(pre)` (or `out = pre` without the activation: the MLP's conv, `mlp_conv`). Shapes: `x`, `out`: `[batch, L, d_inner]`; `w`: `[d_inner, K]`;
//! `bias`: `[d_inner]`. Parallel over batch items; the channel loop is innermost (contiguous).
use rayon::prelude::*;

use super::fill::filled;
use super::gemm::transposed;

use super::host::elementwise::{self, kernel, vectorized_kernel as vectorized};
use super::host::silu_and_grad;

/// Inputs of the fused conv, plus the pre-activation kept by [`ConvSilu::forward`].
pub(crate) struct ConvSilu {
    pub(crate) batch: usize,
    pub(crate) len: usize,
    pub(crate) channels: usize,
    pub(crate) kernel: usize,
    /// `[batch, L, d_inner]`.
    pub(crate) x: Vec<f32>,
    /// Transposed weight `[K, d_inner]`.
    pub(crate) w_t: Vec<f32>,
    /// `[d_inner]`.
    pub(crate) bias: Vec<f32>,
    /// Pre-activation `[batch, L, d_inner]`, filled by the forward (when `silu`).
    pub(crate) pre: Vec<f32>,
    /// Whether SiLU follows the conv.
    pub(crate) silu: bool,
    /// Distance between the kernel's taps (1: contiguous).
    pub(crate) dilation: usize,
}

impl std::fmt::Debug for ConvSilu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ConvSilu[{}, {}, {}; k {}]",
            self.batch, self.len, self.channels, self.kernel
        )
    }
}

/// Gradients of [`ConvSilu`]: `dx` `[batch, L, d_inner]`, `dw` `[d_inner, K]`, `dbias`.
pub(crate) struct ConvGrads {
    pub(crate) dx: Vec<f32>,
    pub(crate) dw: Vec<f32>,
    pub(crate) dbias: Vec<f32>,
}

impl ConvSilu {
    /// `w` is `[d_inner, K]` row-major, as the module stores it.
    pub(crate) fn new(
        x: Vec<f32>,
        [batch, len, channels]: [usize; 3],
        w: &[f32],
        bias: Vec<f32>,
        silu: bool,
        dilation: usize,
    ) -> Self {
        assert!(dilation >= 1, "conv: dilation must be at least 1");
        let kernel = w.len() / channels.max(1);
        let w_t = transposed(w, channels, kernel);
        ConvSilu {
            batch,
            len,
            channels,
            kernel,
            x,
            w_t,
            bias,
            pre: Vec::new(),
            silu,
            dilation,
        }
    }

    /// `silu(conv(x))` (or `conv(x)`) as `[batch, L, d_inner]`; keeps the pre-activation for
    /// the backward.
    pub(crate) fn forward(&mut self) -> Vec<f32> {
        let (l, ch) = (self.len, self.channels);
        let items = self.x.par_chunks(l * ch);
        let (pre, _) = filled(self.batch * l * ch, l * ch, items, |out, x| {
            let (w_t, bias, dil) = (&self.w_t, &self.bias, self.dilation);
            vectorized(ConvItem {
                out,
                x,
                w_t,
                bias,
                dil,
            });
        });
        if !self.silu {
            return pre;
        }
        let out = elementwise::map1(&pre, |p, fma| silu_and_grad(p, fma).0);
        self.pre = pre;
        out
    }

    /// Gradients given `dL/dout`.
    pub(crate) fn backward(&self, grad: &[f32]) -> ConvGrads {
        let (l, ch, kk) = (self.len, self.channels, self.kernel);
        let through_silu;
        let gpre = if self.silu {
            through_silu =
                elementwise::map2(grad, &self.pre, |g, p, fma| g * silu_and_grad(p, fma).1);
            &through_silu[..]
        } else {
            grad
        };
        let items = self.x.par_chunks(l * ch).zip(gpre.par_chunks(l * ch));
        let (dx, partial) = filled(self.batch * l * ch, l * ch, items, |dx, (x, gp)| {
            let (w_t, dil) = (&self.w_t, self.dilation);
            vectorized(ConvBackwardItem {
                dx,
                x,
                gp,
                w_t,
                ch,
                dil,
            })
        });
        let mut dw = vec![0.0f32; ch * kk];
        let mut dbias = vec![0.0f32; ch];
        for (dw_t, db) in partial {
            for j in 0..kk {
                for k in 0..ch {
                    dw[k * kk + j] += dw_t[j * ch + k];
                }
            }
            dbias.iter_mut().zip(&db).for_each(|(o, v)| *o += v);
        }
        ConvGrads { dx, dw, dbias }
    }
}

// The per-item loops run through `vectorized` (`elementwise::vectorized_kernel`), compiled for
// AVX-512/AVX2: as closure bodies they had stayed out of line, in SSE code.
kernel!(ConvItem {
    out: &'a mut [f32],
    x: &'a [f32],
    w_t: &'a [f32],
    bias: &'a [f32],
    dil: usize,
} -> () = conv_item);
kernel!(ConvBackwardItem {
    dx: &'a mut [f32],
    x: &'a [f32],
    gp: &'a [f32],
    w_t: &'a [f32],
    ch: usize,
    dil: usize,
} -> (Vec<f32>, Vec<f32>) = conv_backward_item);

/// Pre-activation of one batch item: `out[t] = bias + Σ_j w_t[j] ⊙ x[t − (K − 1 − j)·dil]`;
/// `x`, `out`: `[L, d_inner]`, `w_t`: `[K, d_inner]`.
#[inline(always)]
fn conv_item(out: &mut [f32], x: &[f32], w_t: &[f32], bias: &[f32], dil: usize) {
    let ch = bias.len();
    let kk = w_t.len() / ch;
    for (t, row) in out.chunks_exact_mut(ch).enumerate() {
        row.copy_from_slice(bias);
        for (j, wr) in w_t.chunks_exact(ch).enumerate() {
            // Input time t − (K − 1 − j)·dil; skip the zero padding.
            let Some(src) = (t + j * dil).checked_sub((kk - 1) * dil) else {
                continue;
            };
            let xr = &x[src * ch..(src + 1) * ch];
            for ((o, &w), &x) in row.iter_mut().zip(wr).zip(xr) {
                *o += w * x;
            }
        }
    }
}

/// Backward of [`conv_item`] for `ch` channels given `gp` = dL/d(pre-activation): adds to
/// `dx` and returns this item's `(dw_t, dbias)`.
#[inline(always)]
fn conv_backward_item(
    dx: &mut [f32],
    x: &[f32],
    gp: &[f32],
    w_t: &[f32],
    ch: usize,
    dil: usize,
) -> (Vec<f32>, Vec<f32>) {
    let kk = w_t.len() / ch;
    let mut dw_t = vec![0.0f32; kk * ch];
    let mut db = vec![0.0f32; ch];
    for (t, gr) in gp.chunks_exact(ch).enumerate() {
        db.iter_mut().zip(gr).for_each(|(d, &g)| *d += g);
        for (j, (wr, dwr)) in w_t
            .chunks_exact(ch)
            .zip(dw_t.chunks_exact_mut(ch))
            .enumerate()
        {
            let Some(src) = (t + j * dil).checked_sub((kk - 1) * dil) else {
                continue;
            };
            let xr = &x[src * ch..(src + 1) * ch];
            let dxr = &mut dx[src * ch..(src + 1) * ch];
            for ((((dw, dx), &g), &x), &w) in dwr.iter_mut().zip(dxr).zip(gr).zip(xr).zip(wr) {
                *dw += g * x;
                *dx += g * w;
            }
        }
    }
    (dw_t, db)
}
