//! Causal multi-head attention as one host op with a hand-written backward: from the fused
//! `qkv` projection's output `[batch, L, 3·d]` to the heads' concatenated output `[batch, L, d]`
//! (before the output projection), RoPE included.
//!
//! One task per (batch item, head). A task gathers its head's q, k, v (`[L, dh]`, rotated and
//! with q pre-scaled by 1/√dh) and works in FlashAttention tiles of [`BQ`] queries × [`BK`]
//! keys: the forward streams the key tiles of each query block with an online softmax (no
//! `[L, L]` matrix is held, only a `[BQ, BK]` tile) and keeps each row's log-sum-exp; the
//! backward recomputes each tile's probabilities from it (FlashAttention-2's recomputation).
//! Tile products run on [`gemm`]'s register-blocked AVX-512 kernel (`matrixmultiply`
//! elsewhere); the softmax maps in the per-ISA copies of `vectorized_kernel` with the
//! polynomial `exp`, over a whole tile at a time so that its vectors pipeline.
use rayon::prelude::*;

use super::gemm::{View, gemm, transposed};
use super::host::elementwise::{kernel, vectorized_kernel};
use super::host::exp_fused;

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
    let kt = transposed(&k, dims.len, dh);
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

/// Query rows per tile.
const BQ: usize = 64;
/// Keys per tile.
const BK: usize = 64;

/// A tile's valid keys for query row `i`: keys `j0..j0 + ck` that `i` may attend to
/// (`j ≤ i`), counted from `j0`.
#[inline(always)]
fn visible(i: usize, j0: usize, ck: usize) -> usize {
    (i + 1).saturating_sub(j0).min(ck)
}

/// Sum of `x` with eight partial sums: the adds vectorise and the order is fixed
/// (reproducible).
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
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

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = a.max(*v);
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// A `rows × cols` tile stored at row stride [`BK`].
fn tile(t: &[f32], rows: usize, cols: usize) -> View<'_> {
    View::cols(t, rows, BK, 0, cols)
}

/// A head's forward: `o` `[L, dh]` and `lse` `[L]`. For each block of [`BQ`] query rows the
/// key blocks up to the diagonal stream past with an online softmax: the tile's scores
/// `S = Q_i·K_jᵀ`, the rows' running max and sum, the output rescaled when the max grows,
/// then `O_i += P·V_j`. Products run on [`gemm`]; only `[BQ, BK]` scores are held.
#[inline(always)]
fn forward_head(head: &Head, len: usize, dh: usize, o: &mut [f32], lse: &mut [f32], fma: bool) {
    let mut s = vec![0.0f32; BQ * BK];
    let (mut m, mut l) = ([0.0f32; BQ], [0.0f32; BQ]);
    for i0 in (0..len).step_by(BQ) {
        let rq = BQ.min(len - i0);
        let q = View::new(&head.q[i0 * dh..(i0 + rq) * dh], rq, dh);
        let oi = &mut o[i0 * dh..(i0 + rq) * dh];
        oi.fill(0.0);
        m.fill(f32::NEG_INFINITY);
        l.fill(0.0);
        for j0 in (0..i0 + rq).step_by(BK) {
            let ck = BK.min(i0 + rq - j0);
            gemm(q, View::cols(&head.kt, dh, len, j0, ck), 0.0, &mut s, BK);
            // Each row's new max, then the tile's exps in one flat loop (independent vectors
            // pipeline; a row of 64 keys alone is too short), then the masked keys zeroed.
            let mut alpha = [1.0f32; BQ];
            for r in 0..rq {
                let n = visible(i0 + r, j0, ck);
                let row = &mut s[r * BK..r * BK + n];
                let m_new = if n == 0 { m[r] } else { m[r].max(max(row)) };
                if m_new > m[r] {
                    alpha[r] = exp_fused(m[r] - m_new, fma);
                    m[r] = m_new;
                }
                row.iter_mut().for_each(|x| *x -= m_new);
            }
            for x in s[..rq * BK].iter_mut() {
                *x = exp_fused(*x, fma);
            }
            for r in 0..rq {
                let n = visible(i0 + r, j0, ck);
                s[r * BK + n..(r + 1) * BK].fill(0.0);
                // exp(−∞) = 0 on a row's first tile: the empty sum and output stay zero.
                if alpha[r] != 1.0 {
                    l[r] *= alpha[r];
                    oi[r * dh..(r + 1) * dh]
                        .iter_mut()
                        .for_each(|x| *x *= alpha[r]);
                }
                l[r] += sum(&s[r * BK..r * BK + n]);
            }
            gemm(
                tile(&s, rq, ck),
                View::new(&head.v[j0 * dh..(j0 + ck) * dh], ck, dh),
                1.0,
                oi,
                dh,
            );
        }
        for r in 0..rq {
            let inv = 1.0 / l[r];
            oi[r * dh..(r + 1) * dh].iter_mut().for_each(|x| *x *= inv);
            lse[i0 + r] = m[r] + l[r].ln();
        }
    }
}

/// Gradients of one head with respect to its (rotated, scaled) q, k and v, given the
/// output `o`, the log-sum-exps and the output's gradient `dout` (all `[L, dh]` / `[L]`),
/// as FlashAttention-2 does it: for each block of [`BK`] keys, the query blocks at or below
/// the diagonal recompute their probabilities `P = exp(S − lse)` from the tile's scores,
/// `dS = P ∘ (dO·Vᵀ − δ)` with `δ_i = dO_i · O_i`, and five tile products accumulate
/// `dV_j += Pᵀ·dO_i`, `dK_j += dSᵀ·Q_i` and `dQ_i += dS·K_j`.
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
    let vt = transposed(&head.v, len, dh);
    let delta: Vec<f32> = (0..len)
        .map(|i| {
            let (g, oi) = (&dout[i * dh..(i + 1) * dh], &o[i * dh..(i + 1) * dh]);
            g.iter().zip(oi).map(|(a, b)| a * b).sum()
        })
        .collect();
    let [dq, dk, dv] = grads;
    let mut p = vec![0.0f32; BQ * BK];
    let mut ds = vec![0.0f32; BQ * BK];
    for j0 in (0..len).step_by(BK) {
        let ck = BK.min(len - j0);
        let kj = View::new(&head.k[j0 * dh..(j0 + ck) * dh], ck, dh);
        for i0 in ((j0 / BQ) * BQ..len).step_by(BQ) {
            let rq = BQ.min(len - i0);
            let q = View::new(&head.q[i0 * dh..(i0 + rq) * dh], rq, dh);
            let g = View::new(&dout[i0 * dh..(i0 + rq) * dh], rq, dh);
            gemm(q, View::cols(&head.kt, dh, len, j0, ck), 0.0, &mut p, BK);
            gemm(g, View::cols(&vt, dh, len, j0, ck), 0.0, &mut ds, BK);
            for r in 0..rq {
                let shift = lse[i0 + r];
                p[r * BK..r * BK + ck].iter_mut().for_each(|x| *x -= shift);
            }
            for x in p[..rq * BK].iter_mut() {
                *x = exp_fused(*x, fma);
            }
            for r in 0..rq {
                let n = visible(i0 + r, j0, ck);
                let (pr, dsr) = (&mut p[r * BK..(r + 1) * BK], &mut ds[r * BK..(r + 1) * BK]);
                let d = delta[i0 + r];
                for (x, y) in pr[..n].iter().zip(&mut dsr[..n]) {
                    *y = *x * (*y - d);
                }
                // Keys after row i do not count: p = 0 there, and so ds.
                pr[n..].fill(0.0);
                dsr[n..].fill(0.0);
            }
            let (pt, dst) = (tile(&p, rq, ck), tile(&ds, rq, ck));
            gemm(pt.t(), g, 1.0, &mut dv[j0 * dh..(j0 + ck) * dh], dh);
            gemm(dst.t(), q, 1.0, &mut dk[j0 * dh..(j0 + ck) * dh], dh);
            gemm(dst, kj, 1.0, &mut dq[i0 * dh..(i0 + rq) * dh], dh);
        }
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
