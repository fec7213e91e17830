//! The whole Mamba residual block as one host op with a hand-written backward:
//! `out = x + out_proj(gated_scan(conv_silu(in_proj_x(xn)), dt_proj(x_proj_Δ(…)), A, B, C, D,
//! in_proj_z(xn)))` with `xn = RMSNorm(x)`.
//!
//! Composed of burn ops, one block was ~30 tensor ops forward and more backward, each with a
//! fresh allocation, an autodiff node and a single-threaded element loop; at the d_model 64
//! training shape that bookkeeping cost as much as the scan itself. Here the matrix products
//! are `matrixmultiply` calls on the host buffers (transposes are strides, not copies), the
//! conv and the gated scan reuse [`ConvSilu`] and [`GatedScan`], and the rest are plain loops.
//!
//! Rows `R = batch · L`; every activation is row-major `[R, ·]`. Weights use the module's
//! layouts: `in_proj` `[d_model, 2·d_inner]`, `x_proj` `[d_inner, dt_rank + 2N]`, `dt_proj`
//! `[dt_rank, d_inner]` + bias `[d_inner]`, `out_proj` `[d_inner, d_model]`, conv `[d_inner,
//! K]` + bias, `A_log` `[d_inner, N]`, `D` `[d_inner]`, norm `[d_model]`.
use rayon::prelude::*;

use super::conv::ConvSilu;
use super::fill::{ROWS_PER_TASK, filled, filled2, sum_in_order};
use super::gemm::{View, gemm, par_gemm, par_gemm_new, par_gemm_t, transposed};
use super::host::elementwise::{kernel, vectorized_kernel as vectorized};
use super::host::{GatedScan, HostInputs, softplus};
use super::rows::HostRmsNorm;

/// Index of each input in the op's input (and gradient) array.
pub(crate) mod slot {
    pub const X: usize = 0;
    pub const NORM: usize = 1;
    pub const IN_PROJ: usize = 2;
    pub const CONV_W: usize = 3;
    pub const CONV_B: usize = 4;
    pub const X_PROJ: usize = 5;
    pub const DT_W: usize = 6;
    pub const DT_B: usize = 7;
    pub const A_LOG: usize = 8;
    pub const D: usize = 9;
    pub const OUT_PROJ: usize = 10;
    /// The conv over `[B | C]` (`[model] conv_bc`); placeholders the block ignores when off.
    pub const CONV_BC_W: usize = 11;
    pub const CONV_BC_B: usize = 12;
    pub const COUNT: usize = 13;
}

/// Sizes of one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockDims {
    pub batch: usize,
    pub len: usize,
    pub d_model: usize,
    pub d_inner: usize,
    pub state: usize,
    pub rank: usize,
    pub kernel: usize,
    /// The conv's dilation (`[model] conv_dilation`), also the `[B | C]` conv's.
    pub dilation: usize,
    /// Kernel of the conv over `[B | C]` (its weight's second dimension).
    pub bc_kernel: usize,
    /// Whether `B` and `C` go through their own causal conv and SiLU (`[model] conv_bc`, as
    /// in Mamba-2); when not, the block ignores that conv's inputs and gives them zero
    /// gradients.
    pub conv_bc: bool,
}

impl BlockDims {
    fn rows(&self) -> usize {
        self.batch * self.len
    }

    /// Columns of `x_proj`'s output: `dt_rank + 2N`.
    fn proj(&self) -> usize {
        self.rank + 2 * self.state
    }

    /// The shape of every input, in [`slot`] order.
    pub(crate) fn input_shapes(&self) -> [Vec<usize>; slot::COUNT] {
        let (dm, di, n, r, k) = (
            self.d_model,
            self.d_inner,
            self.state,
            self.rank,
            self.kernel,
        );
        [
            vec![self.batch, self.len, dm],
            vec![dm],
            vec![dm, 2 * di],
            vec![di, k],
            vec![di],
            vec![di, r + 2 * n],
            vec![r, di],
            vec![di],
            vec![di, n],
            vec![di],
            vec![di, dm],
            vec![2 * n, self.bc_kernel],
            vec![2 * n],
        ]
    }
}

// The row loops below run through `vectorized` (`elementwise::vectorized_kernel`), compiled
// for AVX-512/AVX2: as closure bodies the compiler had kept them out of line, in SSE code.
kernel!(fma DtProjRows {
    raw: &'a mut [f32],
    delta: &'a mut [f32],
    low: &'a [f32],
    w_dt: &'a [f32],
    b_dt: &'a [f32],
} -> () = dt_proj_rows);

/// `dt_proj` and softplus for rows: `raw = Δ_low · W_dt + b_dt` (`Δ_low` rows of `dt_rank`
/// values starting at `low`), `delta = softplus(raw)`.
#[inline(always)]
fn dt_proj_rows(
    raw: &mut [f32],
    delta: &mut [f32],
    low: &[f32],
    w_dt: &[f32],
    b_dt: &[f32],
    fma: bool,
) {
    let di = b_dt.len();
    let r = w_dt.len() / di;
    let rows = raw.chunks_exact_mut(di).zip(delta.chunks_exact_mut(di));
    for (i, (raw, delta)) in rows.enumerate() {
        raw.copy_from_slice(b_dt);
        for (&lo, w) in low[i * r..(i + 1) * r].iter().zip(w_dt.chunks_exact(di)) {
            raw.iter_mut().zip(w).for_each(|(o, &w)| *o += lo * w);
        }
        for (o, &x) in delta.iter_mut().zip(raw.iter()) {
            *o = softplus(x, fma);
        }
    }
}

/// The block's weights, shared by its per-item parts ([`SeqBlock`]).
struct Weights {
    gamma: Vec<f32>,
    w_in: Vec<f32>,
    conv_w: Vec<f32>,
    conv_b: Vec<f32>,
    w_x: Vec<f32>,
    w_dt: Vec<f32>,
    b_dt: Vec<f32>,
    /// `A = −exp(A_log)`, `[d_inner, N]`.
    a: Vec<f32>,
    d: Vec<f32>,
    w_out: Vec<f32>,
    /// The `[B | C]` conv: `[2N, K]` and `[2N]`.
    conv_bc_w: Vec<f32>,
    conv_bc_b: Vec<f32>,
}

/// The projection weights transposed, made once per backward for all items: the backward's
/// products take them as right operands with contiguous rows (see `gemm`).
struct Transposed {
    /// `[2·d_inner, d_model]`.
    w_in: Vec<f32>,
    /// `[d_model, d_inner]`.
    w_out: Vec<f32>,
    /// `[dt_rank + 2N, d_inner]`.
    w_x: Vec<f32>,
    /// `[d_inner, dt_rank]`.
    w_dt: Vec<f32>,
}

impl Transposed {
    fn of(w: &Weights, dims: BlockDims) -> Self {
        let (dm, di, r) = (dims.d_model, dims.d_inner, dims.rank);
        Transposed {
            w_in: transposed(&w.w_in, dm, 2 * di),
            w_out: transposed(&w.w_out, di, dm),
            w_x: transposed(&w.w_x, di, dims.proj()),
            w_dt: transposed(&w.w_dt, r, di),
        }
    }
}

/// The forward's inputs and everything its backward needs.
///
/// The block runs as one task per batch item ([`SeqBlock`]), each going through every step of
/// the block on its own rows, rather than each step in parallel over all rows: an item's
/// activations (~1.3 MB at d_model 64, L 256) stay in its core's L2 from one step to the
/// next, where whole-batch activations went through L3 at every step. The steps' own parallel
/// loops still split an item's work when there are fewer items than threads.
pub(crate) struct HostBlock {
    pub(crate) dims: BlockDims,
    weights: Weights,
    /// One per batch item, in order.
    items: Vec<SeqBlock>,
}

impl std::fmt::Debug for HostBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostBlock{:?}", self.dims)
    }
}

impl HostBlock {
    /// Runs the forward; `inputs` in [`slot`] order, each row-major with the shape
    /// [`BlockDims::input_shapes`] gives. Returns `[batch, L, d_model]`.
    ///
    /// `h0` is the scan's state before the first step, `[batch, d_inner, N]` (zeros when
    /// `None`); it gets no gradient.
    pub(crate) fn forward(
        dims: BlockDims,
        eps: f32,
        mut inputs: [Vec<f32>; slot::COUNT],
        h0: Option<&[f32]>,
    ) -> (Self, Vec<f32>) {
        let BlockDims {
            d_model,
            d_inner,
            state,
            rank,
            kernel,
            ..
        } = dims;
        assert!(
            d_model > 0 && d_inner > 0 && state > 0 && rank > 0 && kernel > 0,
            "mamba_block: d_model, d_inner, d_state, dt_rank and d_conv must be at least 1"
        );
        for (v, shape) in inputs.iter().zip(dims.input_shapes()) {
            assert_eq!(
                v.len(),
                shape.iter().product::<usize>(),
                "mamba block input {shape:?}"
            );
        }
        let mut take = |i: usize| std::mem::take(&mut inputs[i]);
        let x = take(slot::X);
        let weights = Weights {
            gamma: take(slot::NORM),
            w_in: take(slot::IN_PROJ),
            conv_w: take(slot::CONV_W),
            conv_b: take(slot::CONV_B),
            w_x: take(slot::X_PROJ),
            w_dt: take(slot::DT_W),
            b_dt: take(slot::DT_B),
            a: take(slot::A_LOG).iter().map(|v| -v.exp()).collect(),
            d: take(slot::D),
            w_out: take(slot::OUT_PROJ),
            conv_bc_w: take(slot::CONV_BC_W),
            conv_bc_b: take(slot::CONV_BC_B),
        };
        let item = BlockDims { batch: 1, ..dims };
        // At least 1 so that a length-0 sequence makes no tasks rather than a zero chunk size.
        let per_item = (dims.len * d_model).max(1);
        let state_len = d_inner * state;
        if let Some(h0) = h0 {
            assert_eq!(h0.len(), dims.batch * state_len, "mamba block h0");
        }
        let tasks = x
            .par_chunks(per_item)
            .enumerate()
            .map(|(i, x)| (x, h0.map(|h| &h[i * state_len..(i + 1) * state_len])));
        // Each task writes its item's output rows while they are still in its cache.
        let (out, items) = filled(x.len(), per_item, tasks, |out, (x, h0)| {
            let (seq, y) = SeqBlock::forward(item, eps, x.to_vec(), &weights, h0);
            out.copy_from_slice(&y);
            seq
        });
        let block = HostBlock {
            dims,
            weights,
            items,
        };
        (block, out)
    }

    /// The scan's final state `[batch, d_inner, N]` (after the last time step).
    pub(crate) fn last_state(&self) -> Vec<f32> {
        self.items
            .iter()
            .flat_map(|seq| seq.scan.last_state.iter().copied())
            .collect()
    }

    /// Gradients of every input in [`slot`] order, given `dL/dout` `[batch, L, d_model]`.
    pub(crate) fn backward(&self, grad: &[f32]) -> [Vec<f32>; slot::COUNT] {
        let dims = self.dims;
        assert_eq!(
            grad.len(),
            dims.batch * dims.len * dims.d_model,
            "block grad"
        );
        let per_item = (dims.len * dims.d_model).max(1);
        let wt = Transposed::of(&self.weights, dims);
        let tasks = self.items.par_iter().zip(grad.par_chunks(per_item));
        let (dx, parts) = filled(grad.len(), per_item, tasks, |dx, (seq, g)| {
            let mut grads = seq.backward(&self.weights, &wt, g);
            dx.copy_from_slice(&std::mem::take(&mut grads[slot::X]));
            grads
        });
        // The weights' gradients summed over items in item order, so that they do not depend
        // on which thread ran which item.
        let shapes = dims.input_shapes();
        let mut out: [Vec<f32>; slot::COUNT] = std::array::from_fn(|k| match k {
            slot::X => Vec::new(),
            _ => vec![0.0f32; shapes[k].iter().product()],
        });
        for grads in parts {
            for (k, (sum, g)) in out.iter_mut().zip(grads).enumerate() {
                if k != slot::X {
                    sum.iter_mut().zip(&g).for_each(|(o, v)| *o += v);
                }
            }
        }
        out[slot::X] = dx;
        out
    }
}

/// One batch item's share of a [`HostBlock`]: its activations (the weights stay in the
/// block).
struct SeqBlock {
    dims: BlockDims,
    /// The RMSNorm (keeps `x`, `γ` and `1 / rms(x)` per row).
    norm: HostRmsNorm,
    /// Normalised input `[R, d_model]`.
    xn: Vec<f32>,
    /// The conv (keeps its input and pre-activation).
    conv: ConvSilu,
    /// The conv over `[B | C]` (keeps its input and pre-activation), when `conv_bc`.
    conv_bc: Option<ConvSilu>,
    /// Low-rank Δ `[R, dt_rank]`.
    dt_low: Vec<f32>,
    /// The gated scan (keeps `u` = conv output, Δ, `A`, `B`, `C`, `D`, `z` and its output).
    scan: GatedScan,
    /// Gated scan output `[R, d_inner]` (the input of `out_proj`).
    y: Vec<f32>,
}

impl SeqBlock {
    /// The forward of `dims.batch` items whose input rows are `x`; returns `[batch, L,
    /// d_model]`.
    fn forward(
        dims: BlockDims,
        eps: f32,
        x: Vec<f32>,
        w: &Weights,
        h0: Option<&[f32]>,
    ) -> (Self, Vec<f32>) {
        let BlockDims {
            batch,
            len,
            d_model: dm,
            d_inner: di,
            state: n,
            rank: r,
            ..
        } = dims;
        let rows = dims.rows();
        let p = dims.proj();

        // RMSNorm: xn = x · rstd · γ (the norm keeps x, the residual).
        let (norm, xn) = HostRmsNorm::forward(x, w.gamma.clone(), eps, [batch, len]);

        // in_proj, as two products so that the conv input and the gate come out contiguous.
        let xn_v = View::new(&xn, rows, dm);
        let xs = par_gemm_new(None, xn_v, View::cols(&w.w_in, dm, 2 * di, 0, di));
        let z = par_gemm_new(None, xn_v, View::cols(&w.w_in, dm, 2 * di, di, di));

        let mut conv = ConvSilu::new(
            xs,
            [batch, len, di],
            &w.conv_w,
            w.conv_b.clone(),
            true,
            dims.dilation,
        );
        let u = conv.forward(); // [R, d_inner]

        // x_proj → [Δ_low | B | C], split into contiguous buffers.
        let dbc = par_gemm_new(None, View::new(&u, rows, di), View::new(&w.w_x, di, p));
        let mut dt_low = vec![0.0f32; rows * r];
        let mut bc = vec![0.0f32; rows * 2 * n];
        for ((row, lo), bc) in dbc
            .chunks(p)
            .zip(dt_low.chunks_exact_mut(r))
            .zip(bc.chunks_exact_mut(2 * n))
        {
            lo.copy_from_slice(&row[..r]);
            bc.copy_from_slice(&row[r..]);
        }
        drop(dbc);
        // With `conv_bc`, [B | C] = silu(conv([B | C])) over its 2N channels.
        let (conv_bc, bc) = if dims.conv_bc {
            let shape = [batch, len, 2 * n];
            let bias = w.conv_bc_b.clone();
            let mut cv = ConvSilu::new(bc, shape, &w.conv_bc_w, bias, true, dims.dilation);
            let out = cv.forward();
            (Some(cv), out)
        } else {
            (None, bc)
        };
        let mut b = vec![0.0f32; rows * n];
        let mut c = vec![0.0f32; rows * n];
        for ((bc, b), c) in bc
            .chunks_exact(2 * n)
            .zip(b.chunks_exact_mut(n))
            .zip(c.chunks_exact_mut(n))
        {
            b.copy_from_slice(&bc[..n]);
            c.copy_from_slice(&bc[n..]);
        }
        drop(bc);

        // dt_proj and softplus in one pass: Δ_raw = Δ_low · W_dt + b_dt, Δ = softplus(Δ_raw).
        // The rank is tiny (d_model / 16), so rank-many row updates beat a packed product.
        let (delta_raw, delta, _) = filled2(
            [rows * di; 2],
            [ROWS_PER_TASK * di; 2],
            (0..rows.div_ceil(ROWS_PER_TASK)).into_par_iter(),
            |raw, delta, task| {
                let lo = &dt_low[(task * ROWS_PER_TASK * r).min(dt_low.len())..];
                let (w_dt, b_dt) = (&w.w_dt, &w.b_dt);
                vectorized(DtProjRows {
                    raw,
                    delta,
                    low: lo,
                    w_dt,
                    b_dt,
                })
            },
        );

        let inputs = HostInputs {
            batch,
            len,
            channels: di,
            state: n,
            u,
            delta,
            a: w.a.clone(),
            b,
            c,
            d: w.d.clone(),
            h0: h0.map(<[f32]>::to_vec),
        };
        let mut scan = GatedScan::with_delta(inputs, delta_raw, z);
        let y = scan.forward(); // [R, d_inner]

        // out = x + y · W_out.
        let out = par_gemm_new(
            Some(norm.x()),
            View::new(&y, rows, di),
            View::new(&w.w_out, di, dm),
        );

        let block = SeqBlock {
            dims,
            norm,
            xn,
            conv,
            conv_bc,
            dt_low,
            scan,
            y,
        };
        (block, out)
    }

    /// This part's share of the gradients of every input in [`slot`] order, given its rows of
    /// `dL/dout`.
    fn backward(&self, w: &Weights, wt: &Transposed, grad: &[f32]) -> [Vec<f32>; slot::COUNT] {
        let BlockDims {
            d_model: dm,
            d_inner: di,
            state: n,
            rank: r,
            ..
        } = self.dims;
        let rows = self.dims.rows();
        let p = self.dims.proj();
        let g_v = View::new(grad, rows, dm);

        // out_proj.
        let mut d_out = vec![0.0f32; di * dm];
        par_gemm_t(View::new(&self.y, rows, di), g_v, &mut d_out, dm);
        let gy = par_gemm_new(None, g_v, View::new(&wt.w_out, dm, di));

        // Gated scan: du (into the conv output), dΔ_raw, dA, dB, dC, dD and dz.
        let (sg, dz) = self.scan.backward(&gy);
        drop(gy);
        let d_a_log: Vec<f32> = sg.da.iter().zip(&w.a).map(|(g, a)| g * a).collect();

        // dt_proj.
        let ddr = View::new(&sg.ddelta, rows, di);
        let mut d_dt_w = vec![0.0f32; r * di];
        par_gemm_t(View::new(&self.dt_low, rows, r), ddr, &mut d_dt_w, di);

        // The [B | C] conv, when there is one: the gradient of x_proj's B and C columns.
        let bc_grads = self.conv_bc.as_ref().map(|cv| {
            let mut g_bc = vec![0.0f32; rows * 2 * n];
            for ((g, db), dc) in g_bc
                .chunks_exact_mut(2 * n)
                .zip(sg.db.chunks_exact(n))
                .zip(sg.dc.chunks_exact(n))
            {
                g[..n].copy_from_slice(db);
                g[n..].copy_from_slice(dc);
            }
            cv.backward(&g_bc)
        });

        // x_proj: the gradient of [Δ_low | B | C] (with dt_proj's bias gradient, a column sum
        // of dΔ_raw, from the same rows), then of its weight and input.
        let w_dt_t = View::new(&wt.w_dt, di, r);
        let tasks = sg.ddelta.par_chunks(ROWS_PER_TASK * di).enumerate();
        let (g_dbc, bias_parts) = filled(rows * p, ROWS_PER_TASK * p, tasks, |g, (task, dd)| {
            let (r0, task_rows) = (task * ROWS_PER_TASK, g.len() / p);
            gemm(ddr.row_range(r0, task_rows), w_dt_t, 0.0, g, p);
            for (i, row) in g.chunks_mut(p).enumerate() {
                let at = (r0 + i) * n;
                match &bc_grads {
                    Some(cg) => row[r..].copy_from_slice(&cg.dx[2 * at..2 * (at + n)]),
                    None => {
                        row[r..r + n].copy_from_slice(&sg.db[at..at + n]);
                        row[r + n..].copy_from_slice(&sg.dc[at..at + n]);
                    }
                }
            }
            let mut sums = vec![0.0f32; di];
            for row in dd.chunks(di) {
                sums.iter_mut().zip(row).for_each(|(o, v)| *o += v);
            }
            sums
        });
        let d_dt_b = sum_in_order(bias_parts, di);
        let g_dbc_v = View::new(&g_dbc, rows, p);
        let mut d_x_proj = vec![0.0f32; di * p];
        par_gemm_t(
            View::new(&self.scan.scan.u, rows, di),
            g_dbc_v,
            &mut d_x_proj,
            p,
        );
        let mut g_u = sg.du;
        par_gemm(g_dbc_v, View::new(&wt.w_x, p, di), 1.0, &mut g_u);
        drop(g_dbc);

        // Conv + SiLU.
        let cg = self.conv.backward(&g_u);
        drop(g_u);

        // in_proj: its output's gradient is [d conv input | dz] side by side, so that the
        // weight and input gradients are one product each (`K` = 2·d_inner for the input's)
        // rather than two.
        let mut g_in = vec![0.0f32; rows * 2 * di];
        for ((row, gx), gz) in g_in
            .chunks_exact_mut(2 * di)
            .zip(cg.dx.chunks_exact(di))
            .zip(dz.chunks_exact(di))
        {
            row[..di].copy_from_slice(gx);
            row[di..].copy_from_slice(gz);
        }
        drop(dz);
        let g_in_v = View::new(&g_in, rows, 2 * di);
        let mut d_in = vec![0.0f32; dm * 2 * di];
        par_gemm_t(View::new(&self.xn, rows, dm), g_in_v, &mut d_in, 2 * di);
        let g_xn = par_gemm_new(None, g_in_v, View::new(&wt.w_in, 2 * di, dm));

        // RMSNorm, with the residual's gradient.
        let (dx, d_gamma) = self.norm.backward(&g_xn, Some(grad));
        let mut out: [Vec<f32>; slot::COUNT] = Default::default();
        out[slot::X] = dx;
        out[slot::NORM] = d_gamma;
        out[slot::IN_PROJ] = d_in;
        out[slot::CONV_W] = cg.dw;
        out[slot::CONV_B] = cg.dbias;
        out[slot::X_PROJ] = d_x_proj;
        out[slot::DT_W] = d_dt_w;
        out[slot::DT_B] = d_dt_b;
        out[slot::A_LOG] = d_a_log;
        out[slot::D] = sg.dd;
        out[slot::OUT_PROJ] = d_out;
        let bc_w_len = 2 * n * self.dims.bc_kernel;
        (out[slot::CONV_BC_W], out[slot::CONV_BC_B]) = match bc_grads {
            Some(cg) => (cg.dw, cg.dbias),
            None => (vec![0.0; bc_w_len], vec![0.0; 2 * n]),
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{BlockDims, HostBlock, slot};

    /// Sequences of length 0 make no per-item tasks: an empty output, and zero gradients of
    /// the weights' shapes.
    #[test]
    fn length_zero_sequences_give_empty_output_and_zero_gradients() {
        let dims = BlockDims {
            batch: 3,
            len: 0,
            d_model: 4,
            d_inner: 8,
            state: 2,
            rank: 1,
            kernel: 3,
            dilation: 1,
            bc_kernel: 3,
            conv_bc: true,
        };
        let inputs = dims
            .input_shapes()
            .map(|s| vec![0.5f32; s.iter().product()]);
        let (block, out) = HostBlock::forward(dims, 1e-5, inputs, None);
        assert!(out.is_empty());
        let grads = block.backward(&[]);
        for (k, (g, shape)) in grads.iter().zip(dims.input_shapes()).enumerate() {
            assert_eq!(g.len(), shape.iter().product::<usize>(), "input {k}");
            assert!(g.iter().all(|&v| v == 0.0), "input {k}");
        }
        assert!(grads[slot::X].is_empty());
    }
}
