//! The LM head and the training loss as one host op with a hand-written backward:
//! `logits = x·W`, `loss = −Σ_r w_r·log softmax(logits_r)[target_r] / max(Σ_r w_r, 1)`, and the
//! number of weighted positions whose argmax is the target (`crate::math::masked_loss` on
//! `Linear::forward`, which the tests compare it with).
//!
//! As burn ops (a matmul, `log_softmax`, `gather`, `argmax` and their backwards) it all ran
//! on the thread that drives the step while the pool waited, and with a tiny vocabulary
//! each op was mostly overhead (docs/performance.md, Round 5).
use rayon::prelude::*;

use super::fill::{ROWS_PER_TASK, filled};
use super::gemm::{View, gemm, par_gemm_new, par_gemm_t, transposed};
use super::rows::indices_below;

/// The head + loss forward's inputs and softmax, kept for the backward.
pub(crate) struct HostHeadLoss {
    /// Head input `[R, d]`.
    x: Vec<f32>,
    /// Head weight `[d, V]`.
    w: Vec<f32>,
    /// `softmax(logits)` `[R, V]`.
    probs: Vec<f32>,
    targets: Vec<usize>,
    /// Loss weight per row.
    weights: Vec<f32>,
    /// `max(Σ weights, 1)`.
    count: f32,
    /// `[batch, L, d]` of the input.
    dims: [usize; 3],
}

impl std::fmt::Debug for HostHeadLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostHeadLoss{:?}", self.dims)
    }
}

/// The loss, and the weight of the rows predicted right.
pub(crate) struct LossValues {
    pub(crate) loss: f32,
    pub(crate) correct: f32,
}

impl HostHeadLoss {
    /// Runs the head and the loss: `x` `[batch, L, d]` (`dims`), `w` `[d, V]`, `targets` and
    /// `weights` one per row. Panics, naming the position, on a target outside `0..V`.
    pub(crate) fn forward(
        x: Vec<f32>,
        dims: [usize; 3],
        w: Vec<f32>,
        targets: &[i64],
        weights: Vec<f32>,
    ) -> (Self, LossValues) {
        let [batch, len, d] = dims;
        let rows = batch * len;
        assert!(d > 0, "head_loss: the input has no features");
        assert_eq!(
            x.len(),
            rows * d,
            "head_loss: input is not [{batch}, {len}, {d}]"
        );
        assert!(
            w.len().is_multiple_of(d),
            "head_loss: head weight of {} values is not [{d}, vocab]",
            w.len()
        );
        assert!(
            targets.len() == rows && weights.len() == rows,
            "head_loss: {} targets and {} weights for {rows} positions",
            targets.len(),
            weights.len()
        );
        let vocab = w.len() / d;
        let targets = indices_below(targets, vocab).unwrap_or_else(|i| {
            panic!(
                "head_loss: target {} at [{}, {}] is outside 0..{vocab}",
                targets[i],
                i / len.max(1),
                i % len.max(1)
            )
        });
        let head = View::new(&w, d, vocab);
        let tasks = (0..rows.div_ceil(ROWS_PER_TASK)).into_par_iter();
        let (probs, sums) = filled(rows * vocab, ROWS_PER_TASK * vocab, tasks, |probs, task| {
            let (r0, n) = (task * ROWS_PER_TASK, probs.len() / vocab.max(1));
            gemm(
                View::new(&x, rows, d).row_range(r0, n),
                head,
                0.0,
                probs,
                vocab,
            );
            let mut sums = (0.0f64, 0.0f64);
            let rows = probs.chunks_exact_mut(vocab.max(1));
            for ((p, &t), &wt) in rows.zip(&targets[r0..]).zip(&weights[r0..]) {
                let (loss, right) = softmax_in_place(p, t);
                sums.0 += f64::from(loss * wt);
                sums.1 += if right { f64::from(wt) } else { 0.0 };
            }
            sums
        });
        // Summed in task order, so the result does not depend on the thread count.
        let (loss_sum, correct) = sums
            .iter()
            .fold((0.0f64, 0.0f64), |(l, c), s| (l + s.0, c + s.1));
        let count = weights.iter().map(|&v| f64::from(v)).sum::<f64>().max(1.0) as f32;
        let values = LossValues {
            loss: (loss_sum / f64::from(count)) as f32,
            correct: correct as f32,
        };
        let state = HostHeadLoss {
            x,
            w,
            probs,
            targets,
            weights,
            count,
            dims,
        };
        (state, values)
    }

    /// The input's shape `[batch, L, d]`.
    pub(crate) fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// The head weight's shape `[d, V]`.
    pub(crate) fn weight_shape(&self) -> [usize; 2] {
        let d = self.dims[2];
        [d, self.w.len() / d]
    }

    /// `(dL/dx, dL/dW)` given `dL/dloss`: `dlogits_r = grad · w_r / count · (softmax_r −
    /// onehot(target_r))`, then `dx = dlogits·Wᵀ`, `dW = xᵀ·dlogits`.
    pub(crate) fn backward(&self, grad: f32) -> (Vec<f32>, Vec<f32>) {
        let [d, vocab] = self.weight_shape();
        let rows = self.targets.len();
        let scale = grad / self.count;
        let tasks = self
            .probs
            .par_chunks((ROWS_PER_TASK * vocab).max(1))
            .enumerate();
        let (dlogits, _) = filled(
            rows * vocab,
            ROWS_PER_TASK * vocab,
            tasks,
            |g, (task, p)| {
                let r0 = task * ROWS_PER_TASK;
                let rows = g.chunks_exact_mut(vocab).zip(p.chunks_exact(vocab));
                for ((g, p), (&t, &wt)) in
                    rows.zip(self.targets[r0..].iter().zip(&self.weights[r0..]))
                {
                    let s = scale * wt;
                    g.iter_mut().zip(p).for_each(|(g, &p)| *g = s * p);
                    g[t] -= s;
                }
            },
        );
        let dl = View::new(&dlogits, rows, vocab);
        // The weight transposed once, so that the product's right operand has contiguous rows.
        let w_t = transposed(&self.w, d, vocab);
        let dx = par_gemm_new(None, dl, View::new(&w_t, vocab, d));
        let mut dw = vec![0.0f32; d * vocab];
        par_gemm_t(View::new(&self.x, rows, d), dl, &mut dw, vocab);
        (dx, dw)
    }
}

/// Turns one row of logits into its softmax; returns `−log softmax[target]` and whether the
/// first largest logit is the target's (burn's `argmax`; NaN logits are skipped, where burn's
/// backends differ, but then the loss is NaN anyway).
fn softmax_in_place(p: &mut [f32], target: usize) -> (f32, bool) {
    let (mut best, mut max) = (0, f32::NEG_INFINITY);
    for (i, &v) in p.iter().enumerate() {
        if v > max {
            (best, max) = (i, v);
        }
    }
    let picked = p[target] - max;
    let mut sum = 0.0f32;
    for v in p.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    p.iter_mut().for_each(|v| *v *= inv);
    (sum.ln() - picked, best == target)
}
