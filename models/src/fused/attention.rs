//! Causal multi-head attention as one host op with a hand-written backward: from the fused
//! `qkv` projection's output `[batch, L, 3·d]` to the heads' concatenated output `[batch, L, d]`
//! (before the output projection), RoPE included.
//!
//! One task per (batch item, head). A task gathers its head's q, k, v (`[L, dh]`, rotated and
//! with q pre-scaled by 1/√dh) and walks the query rows: a row's scores over its keys
//! `0..=i` go into one reused row buffer (`[L]`; no `[L, L]` matrix is ever held), then an
//! exact softmax (max, exp, sum) and the weighted sum of the values. The forward keeps each
//! row's log-sum-exp; the backward recomputes the row's probabilities from it
//! (FlashAttention's recomputation) and accumulates dq, dk, dv for the head. Score loops run
//! over contiguous keys (k is held transposed, `[dh, L]`), value loops over contiguous head
//! features, both in the per-ISA copies of `vectorized_kernel` with the polynomial `exp`.
//!
//! Why a row at a time rather than tiles: at the head sizes here (dh 8–64) a head's k and v
//! stay in L1/L2 for the whole walk, so the row buffer is all the blocking that pays; the
//! softmax is exact (two passes over a row in cache) rather than online.
use rayon::prelude::*;

use super::host::elementwise::{kernel, vectorized_kernel};
use super::host::{exp_fused, madd_fused};

/// Shapes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttentionDims {
    pub batch: usize,
    pub len: usize,
    /// Model width `d` (the input has `3·d` features).
    pub d: usize,
    pub heads: usize,
    pub rope: bool,
}

impl AttentionDims {
    fn dh(&self) -> usize {
        self.d / self.heads
    }
}

/// The forward's state for the backward: its input, output and each row's log-sum-exp.
#[derive(Debug)]
pub(crate) struct HostAttention {
    dims: AttentionDims,
    qkv: Vec<f32>,
    out: Vec<f32>,
    /// `[batch, heads, L]`.
    lse: Vec<f32>,
}

/// RoPE's `cos`, `sin` `[L, dh/2]` (base 10000, rotate-half); the composed path uses the
/// same tables.
pub(crate) fn rope_tables(len: usize, dh: usize) -> (Vec<f32>, Vec<f32>) {
    let half = dh / 2;
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for p in 0..len {
        for i in 0..half {
            let theta = (p as f64) * 10000f64.powf(-2.0 * i as f64 / dh as f64);
            cos.push(theta.cos() as f32);
            sin.push(theta.sin() as f32);
        }
    }
    (cos, sin)
}

/// Rotates each row of `x` `[L, dh]` by its position (`sign` −1: the inverse rotation, for
/// gradients).
fn rotate(x: &mut [f32], dh: usize, cos: &[f32], sin: &[f32], sign: f32) {
    let half = dh / 2;
    for (p, row) in x.chunks_exact_mut(dh).enumerate() {
        let (c, s) = (
            &cos[p * half..(p + 1) * half],
            &sin[p * half..(p + 1) * half],
        );
        for i in 0..half {
            let (x1, x2) = (row[i], row[i + half]);
            let si = sign * s[i];
            row[i] = x1 * c[i] - x2 * si;
            row[i + half] = x1 * si + x2 * c[i];
        }
    }
}

/// One head's q (rotated, scaled), k (rotated) and v, each `[L, dh]`, and k transposed.
pub(crate) struct Head {
    q: Vec<f32>,
    k: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
}

fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = x[r * cols + c];
        }
    }
    t
}

fn load_head(
    qkv: &[f32],
    dims: AttentionDims,
    b: usize,
    h: usize,
    rope: &(Vec<f32>, Vec<f32>),
) -> Head {
    let (d, dh) = (dims.d, dims.dh());
    let part = |which: usize| head_rows(qkv, dims, b, 3 * d, which * d + h * dh);
    let (mut q, mut k, v) = (part(0), part(1), part(2));
    if dims.rope {
        rotate(&mut q, dh, &rope.0, &rope.1, 1.0);
        rotate(&mut k, dh, &rope.0, &rope.1, 1.0);
    }
    let scale = 1.0 / (dh as f32).sqrt();
    q.iter_mut().for_each(|x| *x *= scale);
    let kt = transpose(&k, dims.len, dh);
    Head { q, k, kt, v }
}

/// `work(task, b, h, head, rope)` for every (batch item `b`, head `h`) in parallel, `task`
/// being `b · heads + h` and `rope` the RoPE tables; the results in task order.
fn each_head<T: Send>(
    qkv: &[f32],
    dims: AttentionDims,
    work: impl Fn(usize, usize, usize, &Head, &(Vec<f32>, Vec<f32>)) -> T + Sync,
) -> Vec<T> {
    let rope = rope_tables(if dims.rope { dims.len } else { 0 }, dims.dh());
    (0..dims.batch * dims.heads)
        .into_par_iter()
        .map(|task| {
            let (b, h) = (task / dims.heads, task % dims.heads);
            work(task, b, h, &load_head(qkv, dims, b, h, &rope), &rope)
        })
        .collect()
}

/// Keys per register block of [`dots_rows`].
const J: usize = 16;

fn sum(x: &[f32]) -> f32 {
    // Eight partial sums: the adds vectorise and the order is fixed (reproducible).
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Query rows walked together: each key (or value) element loaded serves this many rows.
const R: usize = 8;

/// `rows[k·len + j] = x_k · t[:, j]` for `k < r` (row `k` of `x`, `[r, dh]`) and `j < n`,
/// with `t` a transposed `[dh, len]` array. A block of `J` results per row stays in
/// registers while the features stream past, and each element of `t` loaded feeds `R`
/// multiply-adds.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dots_rows(
    x: &[f32],
    r: usize,
    dh: usize,
    t: &[f32],
    len: usize,
    n: usize,
    rows: &mut [f32],
    fma: bool,
) {
    let zero = vec![0.0f32; dh];
    let xs: [&[f32]; R] = std::array::from_fn(|k| {
        if k < r {
            &x[k * dh..(k + 1) * dh]
        } else {
            &zero[..]
        }
    });
    let mut j = 0;
    while j + J <= n {
        let mut acc = [[0.0f32; J]; R];
        for c in 0..dh {
            let tc: &[f32; J] = t[c * len + j..c * len + j + J].try_into().expect("J keys");
            for (a, xk) in acc.iter_mut().zip(&xs) {
                let xc = xk[c];
                for l in 0..J {
                    a[l] = madd_fused(xc, tc[l], a[l], fma);
                }
            }
        }
        for (k, a) in acc.iter().enumerate().take(r) {
            rows[k * len + j..k * len + j + J].copy_from_slice(a);
        }
        j += J;
    }
    for jj in j..n {
        for (k, xk) in xs.iter().enumerate().take(r) {
            let mut acc = 0.0;
            for c in 0..dh {
                acc = madd_fused(xk[c], t[c * len + jj], acc, fma);
            }
            rows[k * len + jj] = acc;
        }
    }
}

/// `out_k[c] = Σ_{j<n} w_k[j] · vals[j, c]` for `k < r` (`w_k` = `rows[k·len..]`, `out`
/// `[r, dh]`): eight features of the `R` rows in registers, each value element loaded once
/// for all of them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn weighted_sum_rows(
    rows: &[f32],
    r: usize,
    len: usize,
    n: usize,
    vals: &[f32],
    dh: usize,
    out: &mut [f32],
    fma: bool,
) {
    const C: usize = 8;
    let w = |k: usize, j: usize| if k < r { rows[k * len + j] } else { 0.0 };
    let mut c0 = 0;
    while c0 + C <= dh {
        let mut acc = [[0.0f32; C]; R];
        for j in 0..n {
            let v: &[f32; C] = vals[j * dh + c0..j * dh + c0 + C]
                .try_into()
                .expect("C features");
            for (k, a) in acc.iter_mut().enumerate() {
                let wk = w(k, j);
                for l in 0..C {
                    a[l] = madd_fused(wk, v[l], a[l], fma);
                }
            }
        }
        for (k, a) in acc.iter().enumerate().take(r) {
            out[k * dh + c0..k * dh + c0 + C].copy_from_slice(a);
        }
        c0 += C;
    }
    for c in c0..dh {
        for k in 0..r {
            let mut acc = 0.0;
            for j in 0..n {
                acc = madd_fused(w(k, j), vals[j * dh + c], acc, fma);
            }
            out[k * dh + c] = acc;
        }
    }
}

/// A head's forward: `o` `[L, dh]` and `lse` `[L]`, `R` query rows at a time over the keys
/// of the block's last row (a row's later keys are zeroed before the values are summed).
#[inline(always)]
fn forward_head(head: &Head, len: usize, dh: usize, o: &mut [f32], lse: &mut [f32], fma: bool) {
    let mut rows = vec![0.0f32; R * len];
    let mut i0 = 0;
    while i0 < len {
        let r = R.min(len - i0);
        let n = i0 + r;
        dots_rows(
            &head.q[i0 * dh..n * dh],
            r,
            dh,
            &head.kt,
            len,
            n,
            &mut rows,
            fma,
        );
        let mut inv = [0.0f32; R];
        for k in 0..r {
            let i = i0 + k;
            let row = &mut rows[k * len..k * len + n];
            let (p, masked) = row.split_at_mut(i + 1);
            let m = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for s in p.iter_mut() {
                *s = exp_fused(*s - m, fma);
            }
            masked.fill(0.0);
            let l = sum(p);
            inv[k] = 1.0 / l;
            lse[i] = m + l.ln();
        }
        let out = &mut o[i0 * dh..n * dh];
        weighted_sum_rows(&rows, r, len, n, &head.v, dh, out, fma);
        for (k, ok) in out.chunks_exact_mut(dh).enumerate() {
            ok.iter_mut().for_each(|x| *x *= inv[k]);
        }
        i0 = n;
    }
}

/// Gradients of one head with respect to its (rotated, scaled) q, k and v, given the
/// output `o`, the log-sum-exps and the output's gradient `dout` (all `[L, dh]` / `[L]`),
/// `R` query rows at a time: dq rows from the block's `ds`, and each key's dk and dv
/// updated once per block with the `R` rows' contributions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_head(
    head: &Head,
    len: usize,
    dh: usize,
    o: &[f32],
    lse: &[f32],
    dout: &[f32],
    grads: &mut [Vec<f32>; 3],
    fma: bool,
) {
    let vt = transpose(&head.v, len, dh);
    let [dq, dk, dv] = grads;
    let mut p = vec![0.0f32; R * len];
    let mut ds = vec![0.0f32; R * len];
    let mut i0 = 0;
    while i0 < len {
        let r = R.min(len - i0);
        let n = i0 + r;
        dots_rows(
            &head.q[i0 * dh..n * dh],
            r,
            dh,
            &head.kt,
            len,
            n,
            &mut p,
            fma,
        );
        let g = &dout[i0 * dh..n * dh];
        dots_rows(g, r, dh, &vt, len, n, &mut ds, fma);
        for k in 0..r {
            let i = i0 + k;
            let gi = &g[k * dh..(k + 1) * dh];
            let delta: f32 = gi
                .iter()
                .zip(&o[i * dh..(i + 1) * dh])
                .map(|(a, b)| a * b)
                .sum();
            let (pk, dsk) = (&mut p[k * len..k * len + n], &mut ds[k * len..k * len + n]);
            for (j, (x, y)) in pk.iter_mut().zip(dsk.iter_mut()).enumerate() {
                // Keys after row i do not count: p = 0 there, and so ds.
                *x = if j <= i {
                    exp_fused(*x - lse[i], fma)
                } else {
                    0.0
                };
                *y = *x * (*y - delta);
            }
        }
        weighted_sum_rows(&ds, r, len, n, &head.k, dh, &mut dq[i0 * dh..n * dh], fma);
        let q = &head.q[i0 * dh..n * dh];
        for j in 0..n {
            let (dkj, dvj) = (&mut dk[j * dh..(j + 1) * dh], &mut dv[j * dh..(j + 1) * dh]);
            for k in 0..r {
                let (dsk, pk) = (ds[k * len + j], p[k * len + j]);
                let (qk, gk) = (&q[k * dh..(k + 1) * dh], &g[k * dh..(k + 1) * dh]);
                for c in 0..dh {
                    dkj[c] = madd_fused(dsk, qk[c], dkj[c], fma);
                    dvj[c] = madd_fused(pk, gk[c], dvj[c], fma);
                }
            }
        }
        i0 = n;
    }
}

kernel!(fma ForwardHead {
    head: &'a Head,
    len: usize,
    dh: usize,
    o: &'a mut [f32],
    lse: &'a mut [f32],
} -> () = forward_head);

kernel!(fma BackwardHead {
    head: &'a Head,
    len: usize,
    dh: usize,
    o: &'a [f32],
    lse: &'a [f32],
    dout: &'a [f32],
    grads: &'a mut [Vec<f32>; 3],
} -> () = backward_head);

/// Copies head `h` of item `b`'s rows `[L, dh]` out of (or into) a `[batch, L, width]` array
/// at feature offset `at`.
fn head_rows(x: &[f32], dims: AttentionDims, b: usize, width: usize, at: usize) -> Vec<f32> {
    let (len, dh) = (dims.len, dims.dh());
    let mut out = Vec::with_capacity(len * dh);
    for t in 0..len {
        let s = (b * len + t) * width + at;
        out.extend_from_slice(&x[s..s + dh]);
    }
    out
}

fn put_head_rows(
    x: &mut [f32],
    rows: &[f32],
    dims: AttentionDims,
    b: usize,
    width: usize,
    at: usize,
) {
    let (len, dh) = (dims.len, dims.dh());
    for t in 0..len {
        let s = (b * len + t) * width + at;
        x[s..s + dh].copy_from_slice(&rows[t * dh..(t + 1) * dh]);
    }
}

impl HostAttention {
    /// `qkv` `[batch, L, 3·d]` → the state and the heads' output `[batch, L, d]`.
    pub(crate) fn forward(qkv: Vec<f32>, dims: AttentionDims) -> (HostAttention, Vec<f32>) {
        let AttentionDims {
            batch,
            len,
            d,
            heads,
            ..
        } = dims;
        assert!(
            d.is_multiple_of(heads),
            "attention: d {d} is not a multiple of {heads} heads"
        );
        assert_eq!(
            qkv.len(),
            batch * len * 3 * d,
            "attention: qkv is not [batch, L, 3·d]"
        );
        let dh = dims.dh();
        let per_head = each_head(&qkv, dims, |_, _, _, head, _| {
            let (mut o, mut lse) = (vec![0.0; len * dh], vec![0.0; len]);
            vectorized_kernel(ForwardHead {
                head,
                len,
                dh,
                o: &mut o,
                lse: &mut lse,
            });
            (o, lse)
        });
        let mut out = vec![0.0f32; batch * len * d];
        let mut lse = Vec::with_capacity(batch * heads * len);
        for (task, (o, l)) in per_head.into_iter().enumerate() {
            let (b, h) = (task / heads, task % heads);
            put_head_rows(&mut out, &o, dims, b, d, h * dh);
            lse.extend_from_slice(&l);
        }
        let state = HostAttention {
            dims,
            qkv,
            out: out.clone(),
            lse,
        };
        (state, out)
    }

    /// The gradient with respect to `qkv` `[batch, L, 3·d]` given the output's `grad`.
    pub(crate) fn backward(&self, grad: &[f32]) -> Vec<f32> {
        let dims = self.dims;
        let AttentionDims {
            batch,
            len,
            d,
            heads,
            ..
        } = dims;
        let dh = dims.dh();
        let scale = 1.0 / (dh as f32).sqrt();
        let per_head = each_head(&self.qkv, dims, |task, b, h, head, rope| {
            let o = head_rows(&self.out, dims, b, d, h * dh);
            let dout = head_rows(grad, dims, b, d, h * dh);
            let lse = &self.lse[task * len..(task + 1) * len];
            let mut grads = [
                vec![0.0; len * dh],
                vec![0.0; len * dh],
                vec![0.0; len * dh],
            ];
            vectorized_kernel(BackwardHead {
                head,
                len,
                dh,
                o: &o,
                lse,
                dout: &dout,
                grads: &mut grads,
            });
            // Back through the scale and the rotation.
            let [dq, dk, _] = &mut grads;
            dq.iter_mut().for_each(|x| *x *= scale);
            if dims.rope {
                rotate(dq, dh, &rope.0, &rope.1, -1.0);
                rotate(dk, dh, &rope.0, &rope.1, -1.0);
            }
            grads
        });
        let mut dqkv = vec![0.0f32; batch * len * 3 * d];
        for (task, grads) in per_head.iter().enumerate() {
            let (b, h) = (task / heads, task % heads);
            for (which, g) in grads.iter().enumerate() {
                put_head_rows(&mut dqkv, g, dims, b, 3 * d, which * d + h * dh);
            }
        }
        dqkv
    }

    pub(crate) fn dims(&self) -> AttentionDims {
        self.dims
    }
}
