//! Host ops of the LM around its blocks: RMSNorm (the final norm, and the attention blocks'
//! norms) and the token embedding, each with a hand-written backward.
//!
//! Composed of burn ops, the final norm was ~4 single-threaded ndarray ops forward and ~10
//! backward on `[R, d_model]`, and ndarray's `select` (burn's embedding) builds one
//! dynamic-dimension view per token, all on one thread while the pool waited
//! (docs/performance.md, Round 4).
use rayon::prelude::*;

use super::fill::{ROWS_PER_TASK, filled, filled2, sum_in_order};
use super::host::elementwise::{kernel, vectorized_kernel as vectorized};

/// RMSNorm over the last dimension of a row-major `[batch, L, d]` input: `x · rstd · γ` with
/// `rstd = 1 / sqrt(mean(x²) + eps)` (burn's `RmsNorm`).
pub(crate) struct HostRmsNorm {
    /// `[batch, L]` of the input.
    lead: [usize; 2],
    x: Vec<f32>,
    gamma: Vec<f32>,
    /// `1 / rms(x)` per row.
    rstd: Vec<f32>,
}

impl std::fmt::Debug for HostRmsNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostRmsNorm[{}, {}]", self.rstd.len(), self.gamma.len())
    }
}

impl HostRmsNorm {
    /// The normalised input; `x` holds `batch · L` rows of `gamma.len()` values.
    pub(crate) fn forward(
        x: Vec<f32>,
        gamma: Vec<f32>,
        eps: f32,
        [batch, len]: [usize; 2],
    ) -> (Self, Vec<f32>) {
        let (dm, rows) = (gamma.len(), batch * len);
        assert!(
            dm > 0 && x.len() == rows * dm,
            "rms_norm: input of {} values is not [{batch}, {len}, {dm}]",
            x.len()
        );
        let (xn, rstd, _) = filled2(
            [rows * dm, rows],
            [ROWS_PER_TASK * dm, ROWS_PER_TASK],
            x.par_chunks(ROWS_PER_TASK * dm),
            |xn, rstd, x| {
                let gamma = &gamma;
                vectorized(RmsNormRows {
                    xn,
                    rstd,
                    x,
                    gamma,
                    eps,
                })
            },
        );
        let lead = [batch, len];
        (
            HostRmsNorm {
                lead,
                x,
                gamma,
                rstd,
            },
            xn,
        )
    }

    /// The input rows.
    pub(crate) fn x(&self) -> &[f32] {
        &self.x
    }

    /// The input's shape `[batch, L, d]`.
    pub(crate) fn dims(&self) -> [usize; 3] {
        [self.lead[0], self.lead[1], self.gamma.len()]
    }

    /// `(dx, dγ)` given `dL/dout`; `dx` starts from `residual` (the gradient reaching `x` by
    /// another path, as in a residual block) when given.
    pub(crate) fn backward(&self, grad: &[f32], residual: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
        let dm = self.gamma.len();
        let chunk = ROWS_PER_TASK * dm;
        assert_eq!(grad.len(), self.x.len(), "rms_norm: gradient size");
        if let Some(r) = residual {
            assert_eq!(r.len(), self.x.len(), "rms_norm: residual gradient size");
        }
        let rows_in = grad
            .par_chunks(chunk)
            .zip(self.x.par_chunks(chunk))
            .zip(self.rstd.par_chunks(ROWS_PER_TASK))
            .enumerate();
        let (dx, parts) = filled(self.x.len(), chunk, rows_in, |dx, (i, ((g, x), rs))| {
            if let Some(r) = residual {
                dx.copy_from_slice(&r[i * chunk..i * chunk + dx.len()]);
            }
            vectorized(RmsNormBackwardRows {
                dx,
                g,
                x,
                rstd: rs,
                gamma: &self.gamma,
            })
        });
        (dx, sum_in_order(parts, dm))
    }
}

// The row loops run through `vectorized` (`elementwise::vectorized_kernel`), compiled for
// AVX-512/AVX2: as closure bodies the compiler had kept them out of line, in SSE code.
kernel!(RmsNormRows {
    xn: &'a mut [f32],
    rstd: &'a mut [f32],
    x: &'a [f32],
    gamma: &'a [f32],
    eps: f32,
} -> () = rms_norm_rows);
kernel!(RmsNormBackwardRows {
    dx: &'a mut [f32],
    g: &'a [f32],
    x: &'a [f32],
    rstd: &'a [f32],
    gamma: &'a [f32],
} -> Vec<f32> = rms_norm_backward_rows);

/// RMSNorm of rows `x` (`[rows, d_model]`): `xn = x · rstd · γ`, `rstd` per row.
#[inline(always)]
fn rms_norm_rows(xn: &mut [f32], rstd: &mut [f32], x: &[f32], gamma: &[f32], eps: f32) {
    let dm = gamma.len();
    for ((xn, rs), x) in xn.chunks_exact_mut(dm).zip(rstd).zip(x.chunks_exact(dm)) {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / dm as f32;
        *rs = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &g) in xn.iter_mut().zip(x).zip(gamma) {
            *o = v * *rs * g;
        }
    }
}

/// RMSNorm backward of rows: with `x̂ = x·rstd` and `ĝ = g·γ`, adds
/// `rstd·(ĝ − x̂·mean(ĝ·x̂))` to `dx` and returns these rows' share of `dγ = Σ g·x̂`.
#[inline(always)]
fn rms_norm_backward_rows(
    dx: &mut [f32],
    g: &[f32],
    x: &[f32],
    rstd: &[f32],
    gamma: &[f32],
) -> Vec<f32> {
    let dm = gamma.len();
    let mut d_gamma = vec![0.0f32; dm];
    let rows = dx
        .chunks_exact_mut(dm)
        .zip(g.chunks_exact(dm))
        .zip(x.chunks_exact(dm));
    for (((dx, g), x), &rs) in rows.zip(rstd) {
        let mut dot = 0.0f32;
        for (((dg, &g), &x), &w) in d_gamma.iter_mut().zip(g).zip(x).zip(gamma) {
            let xh = x * rs;
            *dg += g * xh;
            dot += g * w * xh;
        }
        let mean = dot / dm as f32;
        for (((dx, &g), &x), &w) in dx.iter_mut().zip(g).zip(x).zip(gamma) {
            *dx += rs * (g * w - x * rs * mean);
        }
    }
    d_gamma
}

/// Token embedding: row `tokens[i]` of the `[vocab, d]` weights for each position `i`.
pub(crate) struct HostEmbedding {
    tokens: Vec<usize>,
    vocab: usize,
    dm: usize,
}

impl std::fmt::Debug for HostEmbedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HostEmbedding[{} tokens, {}×{}]",
            self.tokens.len(),
            self.vocab,
            self.dm
        )
    }
}

/// `ids` as indices into `0..bound`, or the position of the first one outside it.
pub(crate) fn indices_below(ids: &[i64], bound: usize) -> Result<Vec<usize>, usize> {
    ids.iter()
        .enumerate()
        .map(|(i, &t)| usize::try_from(t).ok().filter(|&t| t < bound).ok_or(i))
        .collect()
}

impl HostEmbedding {
    /// `[tokens.len(), d]` rows gathered from `weights` (`[vocab, d]`, row-major). Panics,
    /// naming the position, on a token outside `0..vocab`.
    pub(crate) fn forward(weights: &[f32], vocab: usize, tokens: &[i64]) -> (Self, Vec<f32>) {
        assert!(
            vocab > 0 && weights.len().is_multiple_of(vocab),
            "embedding: weights are not {vocab} rows"
        );
        let dm = weights.len() / vocab;
        let tokens = indices_below(tokens, vocab).unwrap_or_else(|i| {
            panic!(
                "embedding: token {} at position {i} is outside the vocabulary 0..{vocab}",
                tokens[i]
            )
        });
        let (out, _) = filled(
            tokens.len() * dm,
            ROWS_PER_TASK * dm,
            tokens.par_chunks(ROWS_PER_TASK),
            |out, ts| {
                for (row, &t) in out.chunks_exact_mut(dm.max(1)).zip(ts) {
                    row.copy_from_slice(&weights[t * dm..(t + 1) * dm]);
                }
            },
        );
        (HostEmbedding { tokens, vocab, dm }, out)
    }

    /// The weights' shape `[vocab, d]`.
    pub(crate) fn weight_shape(&self) -> [usize; 2] {
        [self.vocab, self.dm]
    }

    /// `dL/dweights` `[vocab, d]` given `dL/dout` `[tokens, d]`: each position's gradient row
    /// added to its token's row, in position order.
    pub(crate) fn backward(&self, grad: &[f32]) -> Vec<f32> {
        let dm = self.dm;
        assert_eq!(
            grad.len(),
            self.tokens.len() * dm,
            "embedding: gradient size"
        );
        let mut dw = vec![0.0f32; self.vocab * dm];
        for (g, &t) in grad.chunks_exact(dm.max(1)).zip(&self.tokens) {
            dw[t * dm..(t + 1) * dm]
                .iter_mut()
                .zip(g)
                .for_each(|(o, v)| *o += v);
        }
        dw
    }
}
