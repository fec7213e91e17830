//! The block kernels written with AVX-512 intrinsics: a block of [`BLOCK`] = 16 channels is
//! exactly one `__m512`. Same layout and arithmetic as the generic `forward_block` /
//! `backward_pass` (the unit test in `host.rs` runs both against a sequential reference);
//! written out by hand because the compiler scalarised parts of the generic backward (the
//! state recompute became 16 scalar multiply-adds per state, the accumulators spilled).
use std::arch::x86_64::*;

use super::{
    BLOCK, BlockGrads, BlockOut, HostInputs, LANES, block_params, gather, initial_state,
    with_scratch,
};

/// Lanes `0..w` set.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn mask(w: usize) -> __mmask16 {
    ((1u32 << w) - 1) as __mmask16
}

/// `s[i..i + 16]` as a vector.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn load(s: &[f32], i: usize) -> __m512 {
    ld(s[i..i + BLOCK].try_into().expect("block in bounds"))
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn store(s: &mut [f32], i: usize, x: __m512) {
    st(
        (&mut s[i..i + BLOCK]).try_into().expect("block in bounds"),
        x,
    )
}

/// Lanes `0..w` of `x` into `s[i..i + w]`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn store_first(s: &mut [f32], i: usize, w: usize, x: __m512) {
    let v = &mut s[i..i + w];
    // SAFETY: the mask writes only lanes `0..w`, which `v` holds.
    unsafe { _mm512_mask_storeu_ps(v.as_mut_ptr(), mask(w), x) }
}

/// A row of 16 lanes as a vector.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn ld(v: &[f32; BLOCK]) -> __m512 {
    // SAFETY: `v` is 16 readable floats.
    unsafe { _mm512_loadu_ps(v.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn st(v: &mut [f32; BLOCK], x: __m512) {
    // SAFETY: `v` is 16 writable floats.
    unsafe { _mm512_storeu_ps(v.as_mut_ptr(), x) }
}

/// `x[0..8] + x[8..16]` into `v`: the lane partial sums of `dB` and `dC`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn fold(v: &mut [f32; LANES], x: __m512) {
    let lo = _mm512_castps512_ps256(x);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)));
    // SAFETY: `v` is 8 writable floats.
    unsafe { _mm256_storeu_ps(v.as_mut_ptr(), _mm256_add_ps(lo, hi)) }
}

/// `2^x` for `x` ≥ −126 (raised to −126 below; NaN gives `2^−126` too): `2^k · p(f)` with
/// `k = round(x)`, `f = x − k` in `[−½, ½]` (exact) and `p` a degree-5 polynomial fitted to
/// `2^f` on that interval for least maximum relative error, with `p(0) = 1` exactly (relative
/// error < 2e-7 after f32 rounding; the degree-6 Taylor polynomial we had before needed one
/// multiply-add more for 3e-7). `scalef` applies `2^k`, and overflows to infinity past 2^128 by
/// itself, so there is no upper clamp: the decays `exp(Δ·A)` (taken as `2^{Δ·A'}` with
/// `A' = A·log2 e` scaled once per block, [`log2e_scaled`]) are at most 1 anyway, since
/// `Δ ≥ 0` and `A < 0`. Four instructions fewer per decay than the `exp` form with its range
/// reduction by `ln 2`, integer exponent arithmetic and two clamps.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn exp2(x: __m512) -> __m512 {
    // Highest degree first; a by-value array so that the loop unrolls. Fitted in f64 by
    // iteratively reweighted least squares on Chebyshev nodes, then rounded to f32. (The linear
    // coefficient is 3 ulp off ln 2 on purpose: the fit spreads the error over the interval.)
    #[allow(clippy::approx_constant)]
    const COEFFS: [f32; 6] = [
        1.326_472_7e-3,
        9.671_513e-3,
        5.550_733_6e-2,
        0.240_222_42,
        0.693_147,
        1.0,
    ];
    let x = _mm512_max_ps(x, _mm512_set1_ps(-126.0));
    // Adding 1.5·2^23 rounds to an integer (`roundscale` is two µops on the FMA port here).
    let round = _mm512_set1_ps(12_582_912.0);
    let k = _mm512_sub_ps(_mm512_add_ps(x, round), round);
    let f = _mm512_sub_ps(x, k);
    let [c5, c4, c3, c2, c1, c0] = COEFFS;
    let mut p = _mm512_set1_ps(c5);
    for c in [c4, c3, c2, c1, c0] {
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, k)
}

/// `A·log2 e` for [`exp2`].
fn log2e_scaled(at: &[f32]) -> Vec<f32> {
    at.iter().map(|a| a * std::f32::consts::LOG2_E).collect()
}

/// `y[bi, :, k0..k0 + w]` as `[L, w]`.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) fn forward_block(s: &HostInputs, bi: usize, k0: usize, w: usize) -> BlockOut {
    let (l, ch, n) = (s.len, s.channels, s.state);
    let (at, dk) = block_params(s, k0, w);
    let at = log2e_scaled(&at);
    let dk = load(&dk, 0);
    let mut h = initial_state(s, bi, k0, w); // [N, BLOCK]
    let mut out = vec![0.0f32; l * w];
    for t in 0..l {
        let row = bi * l + t;
        let dt = load(&gather(&s.delta, row, ch, k0, w), 0);
        let x = load(&gather(&s.u, row, ch, k0, w), 0);
        let dtx = _mm512_mul_ps(dt, x);
        let (bt, ct) = (&s.b[row * n..(row + 1) * n], &s.c[row * n..(row + 1) * n]);
        let mut acc = _mm512_mul_ps(dk, x);
        for st in 0..n {
            let o = st * BLOCK;
            let e = exp2(_mm512_mul_ps(dt, load(&at, o)));
            let v = _mm512_fmadd_ps(e, load(&h, o), _mm512_mul_ps(dtx, _mm512_set1_ps(bt[st])));
            store(&mut h, o, v);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(ct[st]), v, acc);
        }
        store_first(&mut out, t * w, w, acc);
    }
    (out, h)
}

/// Gradients of channels `k0..k0 + w` of batch item `bi` (see `super::backward_block`).
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) fn backward_block(
    s: &HostInputs,
    grad: &[f32],
    bi: usize,
    k0: usize,
    w: usize,
) -> BlockGrads {
    with_scratch(s, (bi, k0, w), |bufs| {
        backward_pass(s, grad, (bi, k0, w), bufs)
    })
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn backward_pass(
    s: &HostInputs,
    grad: &[f32],
    (bi, k0, w): (usize, usize, usize),
    [dts, xs, dys, states, decays, pc, pb]: [&mut [f32]; 7],
) -> BlockGrads {
    let (l, ch, n) = (s.len, s.channels, s.state);
    let (at, dk) = block_params(s, k0, w);
    let dk = load(&dk, 0);
    for t in 0..l {
        let row = bi * l + t;
        store(dts, t * BLOCK, load(&gather(&s.delta, row, ch, k0, w), 0));
        store(xs, t * BLOCK, load(&gather(&s.u, row, ch, k0, w), 0));
        store(dys, t * BLOCK, load(&gather(grad, row, ch, k0, w), 0));
    }
    let at2 = log2e_scaled(&at);
    // Rows of 16 lanes, iterated in lockstep below so that no access needs a bounds check.
    let (at, at2) = (at.as_chunks::<BLOCK>().0, at2.as_chunks::<BLOCK>().0); // [N]
    let states = states.as_chunks_mut::<BLOCK>().0; // [(L + 1)·N]
    let decays = decays.as_chunks_mut::<BLOCK>().0; // [L·N]
    let (pc, pb) = (pc.as_chunks_mut::<LANES>().0, pb.as_chunks_mut::<LANES>().0); // [L·N]
    // Recompute the states h_t (row t + 1 of `states`) and the decays exp(Δ_t·A).
    for t in 0..l {
        let row = bi * l + t;
        let dt = load(dts, t * BLOCK);
        let dtx = _mm512_mul_ps(dt, load(xs, t * BLOCK));
        let bt = &s.b[row * n..(row + 1) * n];
        let (done, next) = states.split_at_mut((t + 1) * n);
        let (prev, cur) = (&done[t * n..], &mut next[..n]);
        let dec = &mut decays[t * n..(t + 1) * n];
        for ((((cur, prev), dec), a2), &b) in cur.iter_mut().zip(prev).zip(dec).zip(at2).zip(bt) {
            let e = exp2(_mm512_mul_ps(dt, ld(a2)));
            st(
                cur,
                _mm512_fmadd_ps(e, ld(prev), _mm512_mul_ps(dtx, _mm512_set1_ps(b))),
            );
            st(dec, e);
        }
    }
    let mut carry = vec![[0.0f32; BLOCK]; n]; // dL/dh_t from later steps
    let mut da = vec![[0.0f32; BLOCK]; n];
    let mut dd = _mm512_setzero_ps();
    let mut du = vec![0.0f32; l * w];
    let mut ddelta = vec![0.0f32; l * w];
    // dC_t and dB_t sum over the block's channels (the lanes): per step the products dy·h_t and
    // gs·Δx of every state go to `hcs` and `gxs`, then one transpose-add ([`sum_lanes_16`])
    // when N = 16 (one vector of sums), else a fold to 8-lane partial sums per state that
    // `reduce_lanes` finishes after the pass.
    let by_tree = n == BLOCK;
    let (mut hcs, mut gxs) = (vec![[0.0f32; BLOCK]; n], vec![[0.0f32; BLOCK]; n]);
    let (mut dc, mut db) = (vec![0.0f32; l * n], vec![0.0f32; l * n]);
    for t in (0..l).rev() {
        let row = bi * l + t;
        let (dt, x, dy) = (
            load(dts, t * BLOCK),
            load(xs, t * BLOCK),
            load(dys, t * BLOCK),
        );
        let dtx = _mm512_mul_ps(dt, x);
        dd = _mm512_fmadd_ps(dy, x, dd);
        let (bt, ct) = (&s.b[row * n..(row + 1) * n], &s.c[row * n..(row + 1) * n]);
        let (prevs, hs) = (
            &states[t * n..(t + 1) * n],
            &states[(t + 1) * n..(t + 2) * n],
        );
        let decs = &decays[t * n..(t + 1) * n];
        // gb = Σ_s gs·B_s; ga = Σ_s A_s·gs·decay_s·h_{t−1,s}.
        let (mut gb, mut ga) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let per_state = carry
            .iter_mut()
            .zip(da.iter_mut())
            .zip(at.iter().zip(bt).zip(ct))
            .zip(prevs.iter().zip(hs).zip(decs))
            .zip(hcs.iter_mut().zip(gxs.iter_mut()));
        for ((((carry, da), ((a, &b), &c)), ((prev, h), dec)), (hc, gx)) in per_state {
            let gs = _mm512_fmadd_ps(dy, _mm512_set1_ps(c), ld(carry));
            let nc = _mm512_mul_ps(gs, ld(dec));
            let q = _mm512_mul_ps(nc, ld(prev));
            st(carry, nc);
            ga = _mm512_fmadd_ps(ld(a), q, ga);
            gb = _mm512_fmadd_ps(gs, _mm512_set1_ps(b), gb);
            st(da, _mm512_fmadd_ps(dt, q, ld(da)));
            st(hc, _mm512_mul_ps(dy, ld(h)));
            st(gx, _mm512_mul_ps(gs, dtx));
        }
        if by_tree {
            store(&mut dc, t * n, sum_lanes_16(&hcs));
            store(&mut db, t * n, sum_lanes_16(&gxs));
        } else {
            let (pcs, pbs) = (&mut pc[t * n..(t + 1) * n], &mut pb[t * n..(t + 1) * n]);
            for (((pcv, pbv), hc), gx) in pcs.iter_mut().zip(pbs.iter_mut()).zip(&hcs).zip(&gxs) {
                fold(pcv, ld(hc));
                fold(pbv, ld(gx));
            }
        }
        store_first(
            &mut du,
            t * w,
            w,
            _mm512_fmadd_ps(dt, gb, _mm512_mul_ps(dy, dk)),
        );
        store_first(&mut ddelta, t * w, w, _mm512_fmadd_ps(x, gb, ga));
    }
    if !by_tree {
        super::avx2::reduce_lanes(pc.as_flattened(), &mut dc);
        super::avx2::reduce_lanes(pb.as_flattened(), &mut db);
    }
    let mut dd_lanes = [0.0f32; BLOCK];
    store(&mut dd_lanes, 0, dd);
    BlockGrads::assemble(
        (k0, w),
        [du, ddelta],
        da.as_flattened(),
        &dd_lanes,
        [dc, db],
    )
}

/// The lane sums of 16 vectors as one vector: lane `s` = `Σ_i v[s][i]`. A tree of 15
/// shuffle-and-add steps (each halves the lanes per vector and doubles the vectors per
/// register), then one permutation: 46 instructions where 16 separate horizontal sums take
/// ~64.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn sum_lanes_16(v: &[[f32; BLOCK]]) -> __m512 {
    let v: &[[f32; BLOCK]; BLOCK] = v.try_into().expect("16 vectors");
    // 128-bit blocks: [a0 a1 b0 b1] + [a2 a3 b2 b3] → 8 partial sums each of a and b.
    let pair_blocks = |a: __m512, b: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xEE>(a, b),
        )
    };
    // [ab0 ab2 cd0 cd2] + [ab1 ab3 cd1 cd3] → one 128-bit block (4 partial sums) per vector.
    let pair_halves = |a: __m512, b: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(a, b),
            _mm512_shuffle_f32x4::<0xDD>(a, b),
        )
    };
    let s: [__m512; 8] = std::array::from_fn(|i| pair_blocks(ld(&v[2 * i]), ld(&v[2 * i + 1])));
    // t[j] block k: the 4 partial sums of vector 4j + k.
    let t: [__m512; 4] = std::array::from_fn(|j| pair_halves(s[2 * j], s[2 * j + 1]));
    // Within each block: [t0 t0 t1 t1] pairs, then single sums.
    let u01 = _mm512_add_ps(
        _mm512_shuffle_ps::<0x44>(t[0], t[1]),
        _mm512_shuffle_ps::<0xEE>(t[0], t[1]),
    );
    let u23 = _mm512_add_ps(
        _mm512_shuffle_ps::<0x44>(t[2], t[3]),
        _mm512_shuffle_ps::<0xEE>(t[2], t[3]),
    );
    let sums = _mm512_add_ps(
        _mm512_shuffle_ps::<0x88>(u01, u23),
        _mm512_shuffle_ps::<0xDD>(u01, u23),
    );
    // Lane 4k + j holds vector 4j + k; put vector s in lane s.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(order, sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp2` against f64 over the decays' range (and below it, where it clamps), on machines
    /// with AVX-512.
    #[test]
    fn exp2_is_accurate() {
        if !std::is_x86_feature_detected!("avx512f") {
            return;
        }
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn worst() -> f64 {
            let mut worst = 0.0f64;
            let mut x = -130.0f32;
            while x < 127.0 {
                let xs: [f32; BLOCK] = std::array::from_fn(|i| x + i as f32 * 0.0011);
                let mut got = [0.0f32; BLOCK];
                st(&mut got, exp2(ld(&xs)));
                for (&x, &g) in xs.iter().zip(&got) {
                    let want = 2f64.powf(x.max(-126.0) as f64);
                    worst = worst.max(((g as f64 - want) / want).abs());
                }
                x += 0.0173;
            }
            worst
        }
        // SAFETY: the CPU has AVX-512 (checked above), and so AVX2 and FMA.
        let worst = unsafe { worst() };
        assert!(worst < 2e-7, "worst relative error {worst:e}");
    }
}
