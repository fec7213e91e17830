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
use super::scores::{AttnSoftmax, BIAS_BUCKETS, HeadScores, Tables, Variant};

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

/// The forward's state for the backward: its inputs, output and each row's log-sum-exp.
#[derive(Debug)]
pub(crate) struct HostAttention {
    dims: AttentionDims,
    variant: Variant,
    /// `[heads]`: ssmax's `s_h`.
    scale: Vec<f32>,
    /// `[heads, BIAS_BUCKETS]`: the learned bias.
    table: Vec<f32>,
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

/// Adds the head's bias by distance to a tile's visible scores and multiplies each row by its
/// factor (ssmax), keeping the unscaled scores in `z` when there is a factor (the backward's
/// `ds_h` needs them).
#[inline(always)]
fn shape_scores(
    sc: &HeadScores,
    s: &mut [f32],
    mut z: Option<&mut [f32]>,
    i0: usize,
    rq: usize,
    j0: usize,
    ck: usize,
) {
    let (biased, scaled) = (sc.biased(), sc.scale.is_some());
    if !biased && !scaled {
        return;
    }
    for r in 0..rq {
        let i = i0 + r;
        let n = visible(i, j0, ck);
        let row = &mut s[r * BK..r * BK + n];
        if biased {
            for (c, x) in row.iter_mut().enumerate() {
                *x += sc.bias(i - (j0 + c));
            }
        }
        if scaled {
            if let Some(z) = z.as_deref_mut() {
                z[r * BK..r * BK + n].copy_from_slice(row);
            }
            let f = sc.row_factor(i);
            row.iter_mut().for_each(|x| *x *= f);
        }
    }
}

#[inline(always)]
fn sigmoid(x: f32, fma: bool) -> f32 {
    1.0 / (1.0 + exp_fused(-x, fma))
}

/// Sigmoid attention's weights of a tile: `σ(s − ln n_i)` on the visible keys, 0 elsewhere.
#[inline(always)]
fn sigmoid_tile(
    sc: &HeadScores,
    s: &mut [f32],
    i0: usize,
    rq: usize,
    j0: usize,
    ck: usize,
    fma: bool,
) {
    for r in 0..rq {
        let shift = sc.ln_n[i0 + r];
        s[r * BK..r * BK + ck].iter_mut().for_each(|x| *x -= shift);
    }
    for x in s[..rq * BK].iter_mut() {
        *x = sigmoid(*x, fma);
    }
    for r in 0..rq {
        let n = visible(i0 + r, j0, ck);
        s[r * BK + n..(r + 1) * BK].fill(0.0);
    }
}

/// A head's forward: `o` `[L, dh]` and `lse` `[L]` (unused by sigmoid attention). For each
/// block of [`BQ`] query rows the key blocks up to the diagonal stream past: the tile's scores
/// `S = Q_i·K_jᵀ`, shaped by the variant ([`shape_scores`]), then for the softmaxes an online
/// softmax (the rows' running max and sum, the output rescaled when the max grows) and for
/// sigmoid attention the weights directly, then `O_i += P·V_j`. Products run on [`gemm`];
/// only `[BQ, BK]` scores are held.
#[inline(always)]
fn forward_head(
    head: &Head,
    sc: &HeadScores,
    len: usize,
    dh: usize,
    o: &mut [f32],
    lse: &mut [f32],
    fma: bool,
) {
    let mut s = vec![0.0f32; BQ * BK];
    let (mut m, mut l) = ([0.0f32; BQ], [0.0f32; BQ]);
    let sigmoid_weights = sc.softmax == AttnSoftmax::Sigmoid;
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
            shape_scores(sc, &mut s, None, i0, rq, j0, ck);
            if sigmoid_weights {
                sigmoid_tile(sc, &mut s, i0, rq, j0, ck, fma);
            } else {
                online_softmax_tile(&mut s, &mut m, &mut l, oi, dh, i0, rq, j0, ck, fma);
            }
            gemm(
                tile(&s, rq, ck),
                View::new(&head.v[j0 * dh..(j0 + ck) * dh], ck, dh),
                1.0,
                oi,
                dh,
            );
        }
        if sigmoid_weights {
            continue;
        }
        for r in 0..rq {
            let (mr, lr) = (m[r] as f64, l[r] as f64);
            // softmax1's extra 1 is exp(0 − m) after the shift by m; in f64, as m may be far
            // from 0 either way.
            let (total, log_total) = match sc.softmax {
                AttnSoftmax::Softmax1 if mr >= 0.0 => {
                    let t = lr + (-mr).exp();
                    (t, mr + t.ln())
                }
                AttnSoftmax::Softmax1 => (lr + (-mr).exp(), (lr * mr.exp()).ln_1p()),
                _ => (lr, mr + lr.ln()),
            };
            let inv = (1.0 / total) as f32;
            oi[r * dh..(r + 1) * dh].iter_mut().for_each(|x| *x *= inv);
            lse[i0 + r] = log_total as f32;
        }
    }
}

/// One tile of the forward's online softmax: each row's new max, the tile's exps in one flat
/// loop (independent vectors pipeline; a row of 64 keys alone is too short), the masked keys
/// zeroed, and the rows' sums and outputs rescaled where the max grew.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn online_softmax_tile(
    s: &mut [f32],
    m: &mut [f32; BQ],
    l: &mut [f32; BQ],
    oi: &mut [f32],
    dh: usize,
    i0: usize,
    rq: usize,
    j0: usize,
    ck: usize,
    fma: bool,
) {
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
}

/// Gradients of one head: with respect to its (rotated, scaled) q, k and v (`grads`), its
/// ssmax scale (returned) and its learned bias per bucket (`dtable`), given the output `o`,
/// the log-sum-exps and the output's gradient `dout` (all `[L, dh]` / `[L]`), as
/// FlashAttention-2 does it: for each block of [`BK`] keys, the query blocks at or below the
/// diagonal recompute their weights `P` from the tile's scores, `dS = P ∘ (dO·Vᵀ − δ)` with
/// `δ_i = dO_i · O_i` (sigmoid: `dO·Vᵀ ∘ P(1 − P)`), and five tile products accumulate
/// `dV_j += Pᵀ·dO_i`, `dK_j += dSᵀ·Q_i` and `dQ_i += dS·K_j`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_head(
    head: &Head,
    sc: &HeadScores,
    len: usize,
    dh: usize,
    o: &[f32],
    lse: &[f32],
    dout: &[f32],
    grads: &mut [Vec<f32>; 3],
    dtable: &mut [f32],
    fma: bool,
) -> f32 {
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
    let mut z = vec![0.0f32; if sc.scale.is_some() { BQ * BK } else { 0 }];
    let mut dscale = 0.0f64;
    let sigmoid_weights = sc.softmax == AttnSoftmax::Sigmoid;
    for j0 in (0..len).step_by(BK) {
        let ck = BK.min(len - j0);
        let kj = View::new(&head.k[j0 * dh..(j0 + ck) * dh], ck, dh);
        for i0 in ((j0 / BQ) * BQ..len).step_by(BQ) {
            let rq = BQ.min(len - i0);
            let q = View::new(&head.q[i0 * dh..(i0 + rq) * dh], rq, dh);
            let g = View::new(&dout[i0 * dh..(i0 + rq) * dh], rq, dh);
            gemm(q, View::cols(&head.kt, dh, len, j0, ck), 0.0, &mut p, BK);
            let zt = (!z.is_empty()).then_some(&mut z[..]);
            shape_scores(sc, &mut p, zt, i0, rq, j0, ck);
            gemm(g, View::cols(&vt, dh, len, j0, ck), 0.0, &mut ds, BK);
            if sigmoid_weights {
                sigmoid_tile(sc, &mut p, i0, rq, j0, ck, fma);
            } else {
                for r in 0..rq {
                    let shift = lse[i0 + r];
                    p[r * BK..r * BK + ck].iter_mut().for_each(|x| *x -= shift);
                }
                for x in p[..rq * BK].iter_mut() {
                    *x = exp_fused(*x, fma);
                }
            }
            for r in 0..rq {
                let i = i0 + r;
                let n = visible(i, j0, ck);
                let (pr, dsr) = (&mut p[r * BK..(r + 1) * BK], &mut ds[r * BK..(r + 1) * BK]);
                if sigmoid_weights {
                    for (x, y) in pr[..n].iter().zip(&mut dsr[..n]) {
                        *y *= *x * (1.0 - *x);
                    }
                } else {
                    let d = delta[i];
                    for (x, y) in pr[..n].iter().zip(&mut dsr[..n]) {
                        *y = *x * (*y - d);
                    }
                }
                // Keys after row i do not count: p = 0 there, and so ds.
                pr[n..].fill(0.0);
                dsr[n..].fill(0.0);
                if sc.scale.is_some() {
                    // s' = s_h·ln n_i·z: ds_h gets ln n_i·z·ds', z gets s_h·ln n_i·ds'.
                    let zr = &z[r * BK..r * BK + n];
                    let dot: f32 = zr.iter().zip(&dsr[..n]).map(|(a, b)| a * b).sum();
                    dscale += (sc.ln_n[i] * dot) as f64;
                    let f = sc.row_factor(i);
                    dsr[..n].iter_mut().for_each(|y| *y *= f);
                }
                if sc.table.is_some() {
                    for (c, y) in dsr[..n].iter().enumerate() {
                        dtable[sc.buckets[i - (j0 + c)]] += y;
                    }
                }
            }
            let (pt, dst) = (tile(&p, rq, ck), tile(&ds, rq, ck));
            gemm(pt.t(), g, 1.0, &mut dv[j0 * dh..(j0 + ck) * dh], dh);
            gemm(dst.t(), q, 1.0, &mut dk[j0 * dh..(j0 + ck) * dh], dh);
            gemm(dst, kj, 1.0, &mut dq[i0 * dh..(i0 + rq) * dh], dh);
        }
    }
    dscale as f32
}

kernel!(fma ForwardHead {
    head: &'a Head,
    sc: &'a HeadScores<'a>,
    len: usize,
    dh: usize,
    o: &'a mut [f32],
    lse: &'a mut [f32],
} -> () = forward_head);

kernel!(fma BackwardHead {
    head: &'a Head,
    sc: &'a HeadScores<'a>,
    len: usize,
    dh: usize,
    o: &'a [f32],
    lse: &'a [f32],
    dout: &'a [f32],
    grads: &'a mut [Vec<f32>; 3],
    dtable: &'a mut [f32],
} -> f32 = backward_head);

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

/// The gradients of [`HostAttention::backward`].
pub(crate) struct AttentionGrads {
    /// `[batch, L, 3·d]`.
    pub dqkv: Vec<f32>,
    /// `[heads]` (ssmax's `s_h`; zeros for other variants).
    pub dscale: Vec<f32>,
    /// `[heads, BIAS_BUCKETS]` (the learned bias; zeros for other variants).
    pub dtable: Vec<f32>,
}

impl HostAttention {
    /// `qkv` `[batch, L, 3·d]` → the state and the heads' output `[batch, L, d]`, for the
    /// `variant` with its parameters: `scale` `[heads]` (ssmax) and `table`
    /// `[heads, BIAS_BUCKETS]` (learned bias), read only by the variants that have them.
    pub(crate) fn forward(
        qkv: Vec<f32>,
        dims: AttentionDims,
        variant: Variant,
        scale: Vec<f32>,
        table: Vec<f32>,
    ) -> (HostAttention, Vec<f32>) {
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
        assert_eq!(scale.len(), heads, "attention: scale is not [heads]");
        assert_eq!(
            table.len(),
            heads * BIAS_BUCKETS,
            "attention: bias table is not [heads, buckets]"
        );
        let dh = dims.dh();
        let tables = Tables::new(len, variant);
        let per_head = each_head(&qkv, dims, |_, _, h, head, _| {
            let sc = tables.head(variant, h, heads, &scale, &table);
            let (mut o, mut lse) = (vec![0.0; len * dh], vec![0.0; len]);
            vectorized_kernel(ForwardHead {
                head,
                sc: &sc,
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
            variant,
            scale,
            table,
            qkv,
            out: out.clone(),
            lse,
        };
        (state, out)
    }

    /// The gradients with respect to `qkv` and the variant's parameters given the output's
    /// `grad`.
    pub(crate) fn backward(&self, grad: &[f32]) -> AttentionGrads {
        let dims = self.dims;
        let AttentionDims {
            batch,
            len,
            d,
            heads,
            ..
        } = dims;
        let dh = dims.dh();
        let q_scale = 1.0 / (dh as f32).sqrt();
        let tables = Tables::new(len, self.variant);
        let per_head = each_head(&self.qkv, dims, |task, b, h, head, rope| {
            let sc = tables.head(self.variant, h, heads, &self.scale, &self.table);
            let o = head_rows(&self.out, dims, b, d, h * dh);
            let dout = head_rows(grad, dims, b, d, h * dh);
            let lse = &self.lse[task * len..(task + 1) * len];
            let mut grads = [
                vec![0.0; len * dh],
                vec![0.0; len * dh],
                vec![0.0; len * dh],
            ];
            let mut dtable = vec![0.0f32; BIAS_BUCKETS];
            let dscale = vectorized_kernel(BackwardHead {
                head,
                sc: &sc,
                len,
                dh,
                o: &o,
                lse,
                dout: &dout,
                grads: &mut grads,
                dtable: &mut dtable,
            });
            // Back through the scale and the rotation.
            let [dq, dk, _] = &mut grads;
            dq.iter_mut().for_each(|x| *x *= q_scale);
            if dims.rope {
                rotate(dq, dh, &rope.0, &rope.1, -1.0);
                rotate(dk, dh, &rope.0, &rope.1, -1.0);
            }
            (grads, dscale, dtable)
        });
        let mut dqkv = vec![0.0f32; batch * len * 3 * d];
        let mut dscale = vec![0.0f32; heads];
        let mut dtable = vec![0.0f32; heads * BIAS_BUCKETS];
        // Summed over the batch in task order: the same on every thread count.
        for (task, (grads, ds, dt)) in per_head.iter().enumerate() {
            let (b, h) = (task / heads, task % heads);
            for (which, g) in grads.iter().enumerate() {
                put_head_rows(&mut dqkv, g, dims, b, 3 * d, which * d + h * dh);
            }
            dscale[h] += ds;
            let row = &mut dtable[h * BIAS_BUCKETS..(h + 1) * BIAS_BUCKETS];
            row.iter_mut().zip(dt).for_each(|(a, g)| *a += g);
        }
        AttentionGrads {
            dqkv,
            dscale,
            dtable,
        }
    }

    pub(crate) fn dims(&self) -> AttentionDims {
        self.dims
    }
}
