//! Matrix products on host buffers for the fused ops: [`View`]s (a transpose or a column
//! slice is a stride, not a copy), with the rows split across rayon tasks. Products whose
//! right operand has contiguous rows run an unpacked AVX-512 kernel where the CPU has one
//! (`avx512::gemm`, faster than `matrixmultiply` at these small shapes); the rest, and every
//! product on other CPUs, run `matrixmultiply`.
use rayon::prelude::*;

use super::fill::{filled, sum_in_order};

/// A row-major view `rows × cols` of `data` with element `(i, j)` at `i·rs + j·cs`: a
/// transpose or a column slice is a view, not a copy.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A contiguous `rows × cols` matrix.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Columns `c0..c0 + cols` of a contiguous matrix with `stride` columns.
    pub(crate) fn cols(
        data: &'a [f32],
        rows: usize,
        stride: usize,
        c0: usize,
        cols: usize,
    ) -> Self {
        View {
            data: &data[c0..],
            rows,
            cols,
            rs: stride,
            cs: 1,
        }
    }

    /// Rows `r0..r0 + rows` (for a view whose rows are `rs` apart).
    pub(crate) fn row_range(self, r0: usize, rows: usize) -> Self {
        View {
            data: &self.data[(r0 * self.rs).min(self.data.len())..],
            rows,
            ..self
        }
    }

    pub(crate) fn t(self) -> Self {
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
pub(crate) fn gemm(a: View, b: View, beta: f32, c: &mut [f32], c_rs: usize) {
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
    #[cfg(target_arch = "x86_64")]
    if b.cs == 1 && a.cols > 0 && std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked), and the asserts above keep every index of
        // the views inside their slices.
        unsafe { avx512::gemm(a, b, beta, c, c_rs) };
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

/// The products whose right operand has contiguous rows, without packing: for a block of
/// [`MR`] rows of `a` and [`NV`] vectors of columns of `b`, `MR · NV` accumulators take one
/// broadcast element of `a` times a row piece of `b` per step of the contraction. At these
/// shapes (`K` = 36–256, `N` = 36–256) `matrixmultiply` spent a quarter of its time packing
/// both operands; here `a` is read in place (any strides) and `b`'s row pieces stay in cache
/// across the row blocks.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::View;

    /// Rows of `a` per block.
    const MR: usize = 8;
    /// 16-float vectors of columns per block.
    const NV: usize = 2;

    /// `c = a·b + beta·c` (`b.cs == 1`, shapes checked by the caller).
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and every index of the views and of `c` (`a.rows × b.cols`
    /// at row stride `c_rs`) must be inside its slice.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemm(a: View, b: View, beta: f32, c: &mut [f32], c_rs: usize) {
        let (m, n) = (a.rows, b.cols);
        for j0 in (0..n).step_by(NV * 16) {
            let width = (n - j0).min(NV * 16);
            // SAFETY (all four): rows i0..i0 + MR (or row i) and columns j0..j0 + width are in
            // range. A last piece of at most 16 columns takes one vector per row, not NV.
            let mut i0 = 0;
            while i0 + MR <= m {
                match width > 16 {
                    true => unsafe { block::<MR, NV>(a, b, beta, c, c_rs, i0, j0, width) },
                    false => unsafe { block::<MR, 1>(a, b, beta, c, c_rs, i0, j0, width) },
                }
                i0 += MR;
            }
            for i in i0..m {
                match width > 16 {
                    true => unsafe { block::<1, NV>(a, b, beta, c, c_rs, i, j0, width) },
                    false => unsafe { block::<1, 1>(a, b, beta, c, c_rs, i, j0, width) },
                }
            }
        }
    }

    /// Lanes `0..w` (at most 16) set.
    #[inline(always)]
    fn lanes(w: usize) -> __mmask16 {
        if w >= 16 {
            !0
        } else {
            ((1u32 << w) - 1) as __mmask16
        }
    }

    /// Rows `i0..i0 + R` and columns `j0..j0 + width` (`width` ≤ `V · 16`) of `c`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const R: usize, const V: usize>(
        a: View,
        b: View,
        beta: f32,
        c: &mut [f32],
        c_rs: usize,
        i0: usize,
        j0: usize,
        width: usize,
    ) {
        let masks: [__mmask16; V] = std::array::from_fn(|v| lanes(width.saturating_sub(16 * v)));
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let (ap, bp) = (a.data.as_ptr(), b.data.as_ptr());
        for p in 0..a.cols {
            let brow = bp.wrapping_add(p * b.rs + j0);
            // SAFETY: columns j0..j0 + width of row p of `b` are in range; masked lanes are not
            // read.
            let bv: [__m512; V] = std::array::from_fn(|v| unsafe {
                _mm512_maskz_loadu_ps(masks[v], brow.wrapping_add(16 * v))
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: element (i0 + r, p) of `a` is in range.
                let x = _mm512_set1_ps(unsafe { *ap.add((i0 + r) * a.rs + p * a.cs) });
                for (acc, &bv) in acc.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(x, bv, *acc);
                }
            }
        }
        let beta_v = _mm512_set1_ps(beta);
        for (r, acc) in acc.iter().enumerate() {
            let crow = c.as_mut_ptr().wrapping_add((i0 + r) * c_rs + j0);
            for (v, &acc) in acc.iter().enumerate() {
                let at = crow.wrapping_add(16 * v);
                // SAFETY: columns j0..j0 + width of row i0 + r of `c` are in range; masked
                // lanes are neither read nor written.
                unsafe {
                    let out = if beta == 0.0 {
                        acc
                    } else {
                        _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(masks[v], at), acc)
                    };
                    _mm512_mask_storeu_ps(at, masks[v], out);
                }
            }
        }
    }
}

/// `m` (`rows × cols`, contiguous) transposed into a new contiguous `cols × rows` matrix:
/// products with a transposed weight take this copy (made once per op) so that the right
/// operand has contiguous rows, which [`gemm`]'s unpacked kernel needs.
pub(crate) fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    // In 16 × 16 blocks: a row-at-a-time transpose writes with a stride of `rows` floats,
    // which at a power-of-two `rows` maps every write to the same cache set.
    const T: usize = 16;
    assert_eq!(m.len(), rows * cols, "transposed: size");
    let mut t = vec![0.0f32; m.len()];
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    t[c * rows + r] = m[r * cols + c];
                }
            }
        }
    }
    t
}

/// The fewest rows of `a` (and `c`) per task of [`par_gemm`].
const GEMM_ROWS: usize = 256;

/// Rows of the contraction per task of [`par_gemm_t`]: fixed, not a share per thread, so that
/// the partial products and their sum (in order) are the same for every thread count and a
/// weight gradient does not change in its last bits with the machine.
const CONTRACTION_ROWS: usize = 512;

/// Rows per task when `rows` are split across the pool's threads: one share per thread (each
/// task packs the other operand again, so more tasks only cost), at least [`GEMM_ROWS`].
fn share_per_thread(rows: usize) -> usize {
    GEMM_ROWS.max(rows.div_ceil(rayon::current_num_threads().max(1)))
}

/// [`gemm`] with the rows of `a` and `c` split across rayon tasks: `a` must have rows at
/// `a.rs` apart (not a transpose) and `c` be exactly `a.rows × b.cols` contiguous.
pub(crate) fn par_gemm(a: View, b: View, beta: f32, c: &mut [f32]) {
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
pub(crate) fn par_gemm_new(base: Option<&[f32]>, a: View, b: View) -> Vec<f32> {
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
pub(crate) fn par_gemm_t(a: View, b: View, c: &mut [f32], c_rs: usize) {
    assert_eq!(a.rows, b.rows, "par_gemm_t: contraction");
    assert!(a.cs == 1 && b.cs == 1, "par_gemm_t: contiguous rows");
    let (m, n) = (a.cols, b.cols);
    let share = CONTRACTION_ROWS;
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
                // n = 7, 23 and 37: one masked vector per row; two with a masked second (the AVX-512
                // kernel's column pieces are 32 wide); a full piece and a masked one.
                let shapes = [1, 255, 257, 600, 1100]
                    .into_iter()
                    .flat_map(|r| [(r, 7), (r, 23), (r, 37)]);
                for (rows, n) in shapes {
                    let (k, wide) = (9, n + 5);
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

    /// The weight-gradient products give the same bits on every thread count.
    #[test]
    fn contraction_sums_do_not_depend_on_the_thread_count() {
        let (rows, m, n) = (2100, 5, 6);
        let (a, b) = (values(rows * m, 5), values(rows * n, 6));
        let product = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut c = vec![0.0f32; m * n];
            pool.install(|| par_gemm_t(View::new(&a, rows, m), View::new(&b, rows, n), &mut c, n));
            c
        };
        let one = product(1);
        for threads in [2, 3, 4] {
            assert_eq!(product(threads), one, "{threads} threads");
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
