//! Scalar math of the host kernels, written so that loops over it vectorise: a branch-free
//! polynomial `exp` (libm's `expf` was a third of a training step), and softplus, sigmoid and
//! SiLU built on it. Each takes whether to fuse its multiply-adds, a constant where inlined
//! into the AVX2/AVX-512 copies.

/// [`exp_with`] without fused multiply-adds (tests).
#[cfg(test)]
fn fast_exp(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// `a·b + c`, as one fused instruction when `FMA` (only inside functions compiled for FMA:
/// elsewhere `mul_add` is a libm call).
#[inline(always)]
pub(super) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `exp(x)` to about 2 ulp for `x` in `[-87, 88]` (clamped outside), branch-free so that loops
/// over it vectorise: `2^k · p(r)` with `x = k·ln2 + r`, `|r| ≤ ln2/2`, `p` of degree 6. `k`
/// comes from the bits of the rounding sum (a float-to-int `as` cast would not vectorise). The
/// multiply-adds are fused when `FMA`.
#[inline(always)]
pub(super) fn exp_with<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = madd::<FMA>(x, LOG2E, ROUND);
    let k = t - ROUND;
    let ki = (t.to_bits() as i32).wrapping_sub(0x4B40_0000); // = k as i32
    let r = madd::<FMA>(-k, LN2_LO, madd::<FMA>(-k, LN2_HI, x));
    let mut p = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = madd::<FMA>(p, r, c);
    }
    p * f32::from_bits(((ki + 127) as u32) << 23)
}

/// [`exp_with`] with the fused multiply-adds chosen by a flag that is a constant where this is
/// inlined (the element-wise maps pass `true` only in their AVX2/AVX-512 copies: see
/// `elementwise::vectorized`).
#[inline(always)]
pub(crate) fn exp_fused(x: f32, fma: bool) -> f32 {
    if fma {
        exp_with::<true>(x)
    } else {
        exp_with::<false>(x)
    }
}

/// [`madd`] with the flag of [`exp_fused`].
#[inline(always)]
pub(crate) fn madd_fused(a: f32, b: f32, c: f32, fma: bool) -> f32 {
    if fma {
        madd::<true>(a, b, c)
    } else {
        madd::<false>(a, b, c)
    }
}

/// `ln(1 + e)` for `e` in `[0, 1]`: `2·atanh(e / (2 + e))` as an odd series (error < 1e-8).
#[inline(always)]
fn ln_1p_unit(e: f32, fma: bool) -> f32 {
    let s = e / (2.0 + e);
    let s2 = s * s;
    let mut p = 1.0 / 13.0;
    for c in [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
        p = madd_fused(p, s2, c, fma);
    }
    2.0 * s * p
}

/// `softplus(x) = max(x, 0) + ln(1 + exp(−|x|))`; `fma` as in [`exp_fused`].
#[inline(always)]
pub(crate) fn softplus(x: f32, fma: bool) -> f32 {
    x.max(0.0) + ln_1p_unit(exp_fused(-x.abs(), fma), fma)
}

/// The logistic function `1 / (1 + exp(−x))`; `fma` as in [`exp_fused`].
#[inline(always)]
pub(crate) fn sigmoid(x: f32, fma: bool) -> f32 {
    1.0 / (1.0 + exp_fused(-x, fma))
}

/// `silu(x) = x·σ(x)` and its derivative `σ(x)·(1 + x·(1 − σ(x)))`; `fma` as in
/// [`exp_fused`].
#[inline(always)]
pub(crate) fn silu_and_grad(x: f32, fma: bool) -> (f32, f32) {
    let sg = sigmoid(x, fma);
    (x * sg, sg * (1.0 + x * (1.0 - sg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            for got in [fast_exp(x), exp_with::<true>(x)] {
                worst = worst.max(((got as f64 - want) / want).abs());
            }
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
        assert_eq!(fast_exp(0.0), 1.0);
    }

    #[test]
    fn softplus_sigmoid_silu_are_accurate() {
        let mut x = -30.0f32;
        while x < 30.0 {
            let xd = x as f64;
            let sp = xd.max(0.0) + (-xd.abs()).exp().ln_1p();
            let sg = 1.0 / (1.0 + (-xd).exp());
            let rel = |got: f32, want: f64| ((got as f64 - want) / want.abs().max(1e-30)).abs();
            // Both forms: with fused multiply-adds (the vector copies) and without.
            for fma in [false, true] {
                assert!(rel(softplus(x, fma), sp) < 1e-6, "softplus({x}, {fma})");
                assert!(rel(sigmoid(x, fma), sg) < 1e-6, "sigmoid({x}, {fma})");
                let (s, ds) = silu_and_grad(x, fma);
                assert!(
                    (s as f64 - xd * sg).abs() < 1e-6 * (1.0 + xd.abs()),
                    "silu({x}, {fma})"
                );
                let want = sg * (1.0 + xd * (1.0 - sg));
                assert!((ds as f64 - want).abs() < 1e-6, "silu'({x}, {fma})");
            }
            x += 0.0731;
        }
    }
}
