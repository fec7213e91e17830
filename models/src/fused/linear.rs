//! A linear layer `y = x·W + b`, optionally followed by GELU, as a host op with a hand-written
//! backward, for the attention block's four projections on the CPU backends (the MLP's first
//! layer and its GELU are one op, so the hidden activations cross to and from the backend once). burn's own backward of `Linear` transposes
//! `x` `[batch·L, d_in]` into a fresh strided copy before its weight-gradient product (perf of
//! a d256 Transformer step: ~8% in that copy alone); here `dW = xᵀ·dy` reads `x` in place
//! ([`par_gemm_t`]) and every product runs on [`gemm`](super::gemm)'s kernels.
use rayon::prelude::*;

use super::gelu::HostGelu;
use super::gemm::{View, par_gemm_new, par_gemm_t, transposed};

/// The forward's state for the backward: its input and weight.
#[derive(Debug)]
pub(crate) struct HostLinear {
    x: Vec<f32>,
    w: Vec<f32>,
    /// `[batch, L, d_in]` of `x`.
    dims: [usize; 3],
    d_out: usize,
    /// With GELU after the layer: the GELU's state (it holds `x·W + b`).
    gelu: Option<HostGelu>,
}

/// The gradients of [`HostLinear::backward`].
pub(crate) struct LinearGrads {
    /// `[batch, L, d_in]`.
    pub dx: Vec<f32>,
    /// `[d_in, d_out]`.
    pub dw: Vec<f32>,
    /// `[d_out]`.
    pub db: Vec<f32>,
}

/// Rows of `dy` per task of the bias gradient: fixed, so the sum's order (and its last bits)
/// does not depend on the thread count.
const BIAS_ROWS: usize = 512;

impl HostLinear {
    /// `x` `[batch, L, d_in]`, `w` `[d_in, d_out]` (burn's layout), `b` `[d_out]` → the state
    /// and `y` `[batch, L, d_out]` (`gelu(x·W + b)` when `gelu`).
    pub(crate) fn forward(
        x: Vec<f32>,
        dims: [usize; 3],
        w: Vec<f32>,
        b: &[f32],
        gelu: bool,
    ) -> (HostLinear, Vec<f32>) {
        let [batch, len, d_in] = dims;
        let (rows, d_out) = (batch * len, b.len());
        assert_eq!(x.len(), rows * d_in, "linear: x is not [batch, L, d_in]");
        assert_eq!(w.len(), d_in * d_out, "linear: weight is not [d_in, d_out]");
        let mut y = par_gemm_new(None, View::new(&x, rows, d_in), View::new(&w, d_in, d_out));
        if b.iter().any(|&v| v != 0.0) {
            y.par_chunks_mut(d_out.max(1) * 64).for_each(|rows| {
                for row in rows.chunks_exact_mut(d_out) {
                    row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
                }
            });
        }
        let (gelu, y) = match gelu {
            true => {
                let (g, h) = HostGelu::forward(y, [batch, len, d_out]);
                (Some(g), h)
            }
            false => (None, y),
        };
        let op = HostLinear {
            x,
            w,
            dims,
            d_out,
            gelu,
        };
        (op, y)
    }

    /// Gradients given `dy` `[batch, L, d_out]`.
    pub(crate) fn backward(&self, dy: &[f32]) -> LinearGrads {
        let [batch, len, d_in] = self.dims;
        let (rows, d_out) = (batch * len, self.d_out);
        assert_eq!(
            dy.len(),
            rows * d_out,
            "linear: dy is not [batch, L, d_out]"
        );
        let through_gelu = self.gelu.as_ref().map(|g| g.backward(dy));
        let dy = through_gelu.as_deref().unwrap_or(dy);
        let wt = transposed(&self.w, d_in, d_out); // [d_out, d_in]
        let dy_view = View::new(dy, rows, d_out);
        let dx = par_gemm_new(None, dy_view, View::new(&wt, d_out, d_in));
        let mut dw = vec![0.0f32; d_in * d_out];
        par_gemm_t(View::new(&self.x, rows, d_in), dy_view, &mut dw, d_out);
        let parts: Vec<Vec<f32>> = dy
            .par_chunks(BIAS_ROWS * d_out.max(1))
            .map(|chunk| {
                let mut acc = vec![0.0f32; d_out];
                for row in chunk.chunks_exact(d_out) {
                    acc.iter_mut().zip(row).for_each(|(a, g)| *a += g);
                }
                acc
            })
            .collect();
        let db = super::fill::sum_in_order(parts, d_out);
        LinearGrads { dx, dw, db }
    }

    pub(crate) fn dims(&self) -> [usize; 3] {
        self.dims
    }

    pub(crate) fn d_out(&self) -> usize {
        self.d_out
    }
}
