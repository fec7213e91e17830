//! The block kernels compiled for AVX2 + FMA (the generic kernels with `FMA = true`), and
//! the lane fold of `dB`/`dC` partial sums in AVX2.
use super::{BlockGrads, BlockOut, HostInputs, LANES};
use std::arch::x86_64::*;

#[target_feature(enable = "avx2,fma")]
pub(super) fn forward_block(s: &HostInputs, bi: usize, k0: usize, w: usize) -> BlockOut {
    super::forward_block::<true>(s, bi, k0, w)
}

#[target_feature(enable = "avx2,fma")]
pub(super) fn backward_block(
    s: &HostInputs,
    grad: &[f32],
    bi: usize,
    k0: usize,
    w: usize,
) -> BlockGrads {
    // The closure inherits this function's target features.
    super::backward_block::<true>(s, grad, bi, k0, w, |p, o| reduce_lanes(p, o))
}

/// [`super::reduce_lanes`], eight outputs at a time: two rounds of `hadd` and a fold of
/// the 128-bit halves.
#[target_feature(enable = "avx2,fma")]
pub(super) fn reduce_lanes(p: &[f32], out: &mut [f32]) {
    assert_eq!(p.len(), out.len() * LANES);
    let full = out.len() / 8 * 8;
    for k0 in (0..full).step_by(8) {
        let v: [__m256; 8] = std::array::from_fn(|i| {
            let l: &[f32; 8] = p[(k0 + i) * LANES..(k0 + i + 1) * LANES]
                .try_into()
                .expect("lane in bounds");
            // SAFETY: `l` is 8 readable floats.
            unsafe { _mm256_loadu_ps(l.as_ptr()) }
        });
        let h01 = _mm256_hadd_ps(v[0], v[1]);
        let h23 = _mm256_hadd_ps(v[2], v[3]);
        let h45 = _mm256_hadd_ps(v[4], v[5]);
        let h67 = _mm256_hadd_ps(v[6], v[7]);
        // Lane k (k < 4) of `q0` holds v[k]'s lanes 0..4 summed; lane 4 + k its lanes 4..8.
        let q0 = _mm256_hadd_ps(h01, h23);
        let q1 = _mm256_hadd_ps(h45, h67);
        let lo = _mm256_permute2f128_ps::<0x20>(q0, q1);
        let hi = _mm256_permute2f128_ps::<0x31>(q0, q1);
        let o: &mut [f32; 8] = (&mut out[k0..k0 + 8]).try_into().expect("in bounds");
        // SAFETY: `o` is 8 writable floats.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), _mm256_add_ps(lo, hi)) };
    }
    super::reduce_lanes(&p[full * LANES..], &mut out[full..]);
}
