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
    pub const COUNT: usize = 11;
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
        ]
    }
}

/// A row-major view `rows × cols` of `data` with element `(i, j)` at `i·rs + j·cs`: a
/// transpose or a column slice is a view, not a copy.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A contiguous `rows × cols` matrix.
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Columns `c0..c0 + cols` of a contiguous matrix with `stride` columns.
    fn cols(data: &'a [f32], rows: usize, stride: usize, c0: usize, cols: usize) -> Self {
        View {
            data: &data[c0..],
            rows,
            cols,
            rs: stride,
            cs: 1,
        }
    }

    /// Rows `r0..r0 + rows` (for a view whose rows are `rs` apart).
    fn row_range(self, r0: usize, rows: usize) -> Self {
        View {
            data: &self.data[(r0 * self.rs).min(self.data.len())..],
            rows,
            ..self
        }
    }

    fn t(self) -> Self {
        View {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn fits(&self, len: usize) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.rs)
            .zip((self.cols - 1).checked_mul(self.cs))
            .and_then(|(r, c)| r.checked_add(c));
        last.is_some_and(|i| i < len)
    }
}

/// `c = a·b + beta·c`, with `c` a `a.rows × b.cols` matrix at row stride `c_rs` in `c`.
fn gemm(a: View, b: View, beta: f32, c: &mut [f32], c_rs: usize) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions");
    assert!(
        a.fits(a.data.len()) && b.fits(b.data.len()),
        "gemm: view out of bounds"
    );
    let out = View {
        data: c,
        rows: a.rows,
        cols: b.cols,
        rs: c_rs,
        cs: 1,
    };
    assert!(out.fits(c.len()), "gemm: output out of bounds");
    // sgemm requires that no two elements of `c` share memory.
    assert!(a.rows <= 1 || c_rs >= b.cols, "gemm: output rows overlap");
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index of the three views inside its slice, and `c`
    // is borrowed mutably, so it aliases neither input.
    unsafe {
        matrixmultiply::sgemm(
            a.rows,
            a.cols,
            b.cols,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            c_rs as isize,
            1,
        );
    }
}

/// The fewest rows of `a` (and `c`) per task of [`par_gemm`], and of the contraction per task
/// of [`par_gemm_t`].
const GEMM_ROWS: usize = 256;

/// Rows per task when `rows` are split across the pool's threads: one share per thread (each
/// task packs the other operand again, so more tasks only cost), at least [`GEMM_ROWS`].
fn share_per_thread(rows: usize) -> usize {
    GEMM_ROWS.max(rows.div_ceil(rayon::current_num_threads().max(1)))
}

/// [`gemm`] with the rows of `a` and `c` split across rayon tasks: `a` must have rows at
/// `a.rs` apart (not a transpose) and `c` be exactly `a.rows × b.cols` contiguous.
fn par_gemm(a: View, b: View, beta: f32, c: &mut [f32]) {
    let n = b.cols;
    assert_eq!(c.len(), a.rows * n, "par_gemm: output size");
    if n == 0 {
        return;
    }
    let share = share_per_thread(a.rows);
    c.par_chunks_mut(share * n).enumerate().for_each(|(i, c)| {
        let part = a.row_range(i * share, c.len() / n);
        gemm(part, b, beta, c, n);
    });
}

/// `base + a·b` (`base` `a.rows × b.cols`, or zeros when `None`) as a new matrix, with the rows
/// split across rayon tasks as in [`par_gemm`]; each task writes its rows of the result
/// (see [`filled`]).
fn par_gemm_new(base: Option<&[f32]>, a: View, b: View) -> Vec<f32> {
    let n = b.cols;
    if let Some(base) = base {
        assert_eq!(base.len(), a.rows * n, "par_gemm_new: base size");
    }
    if n == 0 || a.rows == 0 {
        return vec![0.0; a.rows * n];
    }
    let share = share_per_thread(a.rows);
    let tasks = (0..a.rows.div_ceil(share)).into_par_iter();
    let (c, _) = filled(a.rows * n, share * n, tasks, |c, i| {
        let part = a.row_range(i * share, c.len() / n);
        match base {
            Some(base) => {
                c.copy_from_slice(&base[i * share * n..i * share * n + c.len()]);
                gemm(part, b, 1.0, c, n);
            }
            None => gemm(part, b, 0.0, c, n),
        }
    });
    c
}

/// `c = aᵀ·b` for `a` `[R, m]` and `b` `[R, n]` (both contiguous), the contraction over `R`
/// split across rayon tasks and their partial products summed; `c` is `m × n` at row stride
/// `c_rs` (so it can be a column block of a wider weight gradient).
fn par_gemm_t(a: View, b: View, c: &mut [f32], c_rs: usize) {
    assert_eq!(a.rows, b.rows, "par_gemm_t: contraction");
    assert!(a.cs == 1 && b.cs == 1, "par_gemm_t: contiguous rows");
    let (m, n) = (a.cols, b.cols);
    let share = share_per_thread(a.rows);
    let sum = (0..a.rows.div_ceil(share).max(1))
        .into_par_iter()
        .map(|i| {
            let (r0, rows) = (i * share, share.min(a.rows - i * share));
            let mut acc = vec![0.0f32; m * n];
            gemm(
                a.row_range(r0, rows).t(),
                b.row_range(r0, rows),
                0.0,
                &mut acc,
                n,
            );
            acc
        })
        .collect::<Vec<_>>();
    let sum = sum_in_order(sum, m * n);
    for (i, row) in sum.chunks(n.max(1)).enumerate().take(m) {
        c[i * c_rs..i * c_rs + n].copy_from_slice(row);
    }
}

// The row loops below run through `vectorized` (`elementwise::vectorized_kernel`), compiled
// for AVX-512/AVX2: as closure bodies the compiler had kept them out of line, in SSE code.
kernel!(DtProjRows {
    raw: &'a mut [f32],
    delta: &'a mut [f32],
    low: &'a [f32],
    w_dt: &'a [f32],
    b_dt: &'a [f32],
} -> () = dt_proj_rows);

/// `dt_proj` and softplus for rows: `raw = Δ_low · W_dt + b_dt` (`Δ_low` rows of `dt_rank`
/// values starting at `low`), `delta = softplus(raw)`.
#[inline(always)]
fn dt_proj_rows(raw: &mut [f32], delta: &mut [f32], low: &[f32], w_dt: &[f32], b_dt: &[f32]) {
    let di = b_dt.len();
    let r = w_dt.len() / di;
    let rows = raw.chunks_exact_mut(di).zip(delta.chunks_exact_mut(di));
    for (i, (raw, delta)) in rows.enumerate() {
        raw.copy_from_slice(b_dt);
        for (&lo, w) in low[i * r..(i + 1) * r].iter().zip(w_dt.chunks_exact(di)) {
            raw.iter_mut().zip(w).for_each(|(o, &w)| *o += lo * w);
        }
        for (o, &x) in delta.iter_mut().zip(raw.iter()) {
            *o = softplus(x);
        }
    }
}

/// The forward's inputs and everything its backward needs.
pub(crate) struct HostBlock {
    pub(crate) dims: BlockDims,
    /// The RMSNorm (keeps `x`, `γ` and `1 / rms(x)` per row).
    norm: HostRmsNorm,
    w_in: Vec<f32>,
    w_x: Vec<f32>,
    w_dt: Vec<f32>,
    w_out: Vec<f32>,
    /// Normalised input `[R, d_model]`.
    xn: Vec<f32>,
    /// The conv (keeps its input and pre-activation).
    conv: ConvSilu,
    /// Low-rank Δ `[R, dt_rank]`.
    dt_low: Vec<f32>,
    /// The gated scan (keeps `u` = conv output, Δ, `A`, `B`, `C`, `D`, `z` and its output).
    scan: GatedScan,
    /// Gated scan output `[R, d_inner]` (the input of `out_proj`).
    y: Vec<f32>,
}

impl std::fmt::Debug for HostBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostBlock{:?}", self.dims)
    }
}

impl HostBlock {
    /// Runs the forward; `inputs` in [`slot`] order, each row-major with the shape
    /// [`BlockDims::input_shapes`] gives. Returns `[batch, L, d_model]`.
    pub(crate) fn forward(
        dims: BlockDims,
        eps: f32,
        mut inputs: [Vec<f32>; slot::COUNT],
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
        let (x, gamma, w_in) = (take(slot::X), take(slot::NORM), take(slot::IN_PROJ));
        let (conv_w, conv_b, w_x) = (take(slot::CONV_W), take(slot::CONV_B), take(slot::X_PROJ));
        let (w_dt, b_dt, a_log) = (take(slot::DT_W), take(slot::DT_B), take(slot::A_LOG));
        let (d, w_out) = (take(slot::D), take(slot::OUT_PROJ));
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
        let (norm, xn) = HostRmsNorm::forward(x, gamma, eps, [batch, len]);

        // in_proj, as two products so that the conv input and the gate come out contiguous.
        let xn_v = View::new(&xn, rows, dm);
        let xs = par_gemm_new(None, xn_v, View::cols(&w_in, dm, 2 * di, 0, di));
        let z = par_gemm_new(None, xn_v, View::cols(&w_in, dm, 2 * di, di, di));

        let mut conv = ConvSilu::new(xs, [batch, len, di], &conv_w, conv_b);
        let u = conv.forward(); // [R, d_inner]

        // x_proj → [Δ_low | B | C], split into contiguous buffers.
        let dbc = par_gemm_new(None, View::new(&u, rows, di), View::new(&w_x, di, p));
        let mut dt_low = vec![0.0f32; rows * r];
        let mut b = vec![0.0f32; rows * n];
        let mut c = vec![0.0f32; rows * n];
        for (i, row) in dbc.chunks(p).enumerate() {
            dt_low[i * r..(i + 1) * r].copy_from_slice(&row[..r]);
            b[i * n..(i + 1) * n].copy_from_slice(&row[r..r + n]);
            c[i * n..(i + 1) * n].copy_from_slice(&row[r + n..]);
        }
        drop(dbc);

        // dt_proj and softplus in one pass: Δ_raw = Δ_low · W_dt + b_dt, Δ = softplus(Δ_raw).
        // The rank is tiny (d_model / 16), so rank-many row updates beat a packed product.
        let (delta_raw, delta, _) = filled2(
            [rows * di; 2],
            [ROWS_PER_TASK * di; 2],
            (0..rows.div_ceil(ROWS_PER_TASK)).into_par_iter(),
            |raw, delta, task| {
                let lo = &dt_low[(task * ROWS_PER_TASK * r).min(dt_low.len())..];
                let (w_dt, b_dt) = (&w_dt, &b_dt);
                vectorized(DtProjRows {
                    raw,
                    delta,
                    low: lo,
                    w_dt,
                    b_dt,
                })
            },
        );

        let a: Vec<f32> = a_log.iter().map(|v| -v.exp()).collect();
        let inputs = HostInputs {
            batch,
            len,
            channels: di,
            state: n,
            u,
            delta,
            a,
            b,
            c,
            d,
        };
        let mut scan = GatedScan::with_delta(inputs, delta_raw, z);
        let y = scan.forward(); // [R, d_inner]

        // out = x + y · W_out.
        let out = par_gemm_new(
            Some(norm.x()),
            View::new(&y, rows, di),
            View::new(&w_out, di, dm),
        );

        let block = HostBlock {
            dims,
            norm,
            w_in,
            w_x,
            w_dt,
            w_out,
            xn,
            conv,
            dt_low,
            scan,
            y,
        };
        (block, out)
    }

    /// Gradients of every input in [`slot`] order, given `dL/dout` `[batch, L, d_model]`.
    pub(crate) fn backward(&self, grad: &[f32]) -> [Vec<f32>; slot::COUNT] {
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
        let gy = par_gemm_new(None, g_v, View::new(&self.w_out, di, dm).t());

        // Gated scan: du (into the conv output), dΔ_raw, dA, dB, dC, dD and dz.
        let (sg, dz) = self.scan.backward(&gy);
        drop(gy);
        let d_a_log: Vec<f32> = sg
            .da
            .iter()
            .zip(&self.scan.scan.a)
            .map(|(g, a)| g * a)
            .collect();

        // dt_proj.
        let ddr = View::new(&sg.ddelta, rows, di);
        let mut d_dt_w = vec![0.0f32; r * di];
        par_gemm_t(View::new(&self.dt_low, rows, r), ddr, &mut d_dt_w, di);

        // x_proj: the gradient of [Δ_low | B | C] (with dt_proj's bias gradient, a column sum
        // of dΔ_raw, from the same rows), then of its weight and input.
        let w_dt_t = View::new(&self.w_dt, r, di).t();
        let tasks = sg.ddelta.par_chunks(ROWS_PER_TASK * di).enumerate();
        let (g_dbc, bias_parts) = filled(rows * p, ROWS_PER_TASK * p, tasks, |g, (task, dd)| {
            let (r0, task_rows) = (task * ROWS_PER_TASK, g.len() / p);
            gemm(ddr.row_range(r0, task_rows), w_dt_t, 0.0, g, p);
            for (i, row) in g.chunks_mut(p).enumerate() {
                let at = (r0 + i) * n;
                row[r..r + n].copy_from_slice(&sg.db[at..at + n]);
                row[r + n..].copy_from_slice(&sg.dc[at..at + n]);
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
        par_gemm(g_dbc_v, View::new(&self.w_x, di, p).t(), 1.0, &mut g_u);
        drop(g_dbc);

        // Conv + SiLU.
        let cg = self.conv.backward(&g_u);
        drop(g_u);

        // in_proj: weight columns [0, d_inner) from the conv input, the rest from the gate.
        let xn_v = View::new(&self.xn, rows, dm);
        let (gx_v, gz_v) = (View::new(&cg.dx, rows, di), View::new(&dz, rows, di));
        let mut d_in = vec![0.0f32; dm * 2 * di];
        par_gemm_t(xn_v, gx_v, &mut d_in, 2 * di);
        par_gemm_t(xn_v, gz_v, &mut d_in[di..], 2 * di);
        let w_in_x = View::cols(&self.w_in, dm, 2 * di, 0, di).t();
        let w_in_z = View::cols(&self.w_in, dm, 2 * di, di, di).t();
        let mut g_xn = par_gemm_new(None, gx_v, w_in_x);
        par_gemm(gz_v, w_in_z, 1.0, &mut g_xn);

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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{View, par_gemm, par_gemm_t};

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000)
            .map(|v| v as f32 / 500.0 - 1.0)
            .collect()
    }

    /// `a·b` by the definition, in f64.
    fn naive(a: View, b: View) -> Vec<f64> {
        let mut c = vec![0.0f64; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols)
                    .map(|k| {
                        a.data[i * a.rs + k * a.cs] as f64 * b.data[k * b.rs + j * b.cs] as f64
                    })
                    .sum();
            }
        }
        c
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}[{i}] = {g}, want {w}"
            );
        }
    }

    /// The split products against the definition for row counts around the task size, with a
    /// transposed and a column-slice operand, on pools of 1, 3 and 4 threads (uneven shares).
    #[test]
    fn split_products_match_the_definition() {
        for threads in [1, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                for rows in [1, 255, 257, 600, 1100] {
                    let (k, n, wide) = (9, 7, 12);
                    let a = values(rows * k, 1);
                    let w = values(k * wide, 2); // [k, wide]; columns 3..3 + n are used
                    let wt = values(n * k, 3); // [n, k], used transposed
                    let a_v = View::new(&a, rows, k);
                    let cols = View::cols(&w, k, wide, 3, n);
                    let mut c = vec![0.0f32; rows * n];
                    par_gemm(a_v, cols, 0.0, &mut c);
                    close(&c, &naive(a_v, cols), &format!("a·w[:, 3..] rows {rows}"));
                    let t = View::new(&wt, n, k).t();
                    par_gemm(a_v, t, 1.0, &mut c); // accumulates onto the previous product
                    let want: Vec<f64> = naive(a_v, cols)
                        .iter()
                        .zip(naive(a_v, t))
                        .map(|(x, y)| x + y)
                        .collect();
                    close(&c, &want, &format!("+ a·wtᵀ rows {rows}"));
                    // aᵀ·b over the rows, written as a column block of a wider matrix.
                    let b = values(rows * n, 4);
                    let b_v = View::new(&b, rows, n);
                    let mut wide_c = vec![-7.0f32; k * (n + 2)];
                    par_gemm_t(a_v, b_v, &mut wide_c[2..], n + 2);
                    let want = naive(a_v.t(), b_v);
                    for i in 0..k {
                        let row = &wide_c[i * (n + 2)..(i + 1) * (n + 2)];
                        assert_eq!(&row[..2], &[-7.0, -7.0], "untouched columns");
                        close(
                            &row[2..],
                            &want[i * n..(i + 1) * n],
                            &format!("aᵀ·b rows {rows}"),
                        );
                    }
                }
            });
        }
    }

    #[test]
    #[should_panic(expected = "gemm: output rows overlap")]
    fn overlapping_output_rows_are_refused() {
        let a = vec![1.0f32; 4];
        let mut c = vec![0.0f32; 8];
        super::gemm(View::new(&a, 2, 2), View::new(&a, 2, 2), 0.0, &mut c, 1);
    }
}
