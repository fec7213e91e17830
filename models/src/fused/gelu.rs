//! GELU `x·Φ(x)` (the exact, erf form burn's `gelu` computes) as a host op with a
//! hand-written backward: the exact derivative `Φ(x) + x·φ(x)`, as PyTorch's `nn.GELU()`
//! has. (burn 0.21's own backward is the derivative of the tanh approximation, up to ~5e-4
//! off, so training numbers of attention models move slightly with this op.) As burn ops its forward and backward call libm's `erf`, `expm1`,
//! `tanh` and `powf` per element, single-threaded: a fifth of a Transformer training step
//! (docs/performance.md, Step 6). Here `erf` is a polynomial in the vectorised `exp`.
use rayon::prelude::*;

use super::fill::filled;
use super::host::elementwise::{kernel, vectorized_kernel};
use super::host::{exp_fused, madd_fused};

/// Elements per task.
const CHUNK: usize = 1 << 14;

/// `out[i] = gelu(x[i])`. A kernel (not a closure passed to `map1`): the erf and exp
/// polynomials are too large for a closure to be inlined into the AVX2/AVX-512 copy, and
/// outside it every `mul_add` became a call to libm's software `fmaf`.
#[inline(always)]
fn gelu_rows(x: &[f32], out: &mut [f32], fma: bool) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = gelu(x, fma);
    }
}

/// `out[i] = grad[i] · gelu'(x[i])`.
#[inline(always)]
fn gelu_grad_rows(x: &[f32], grad: &[f32], out: &mut [f32], fma: bool) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(grad) {
        *o = g * gelu_grad(x, fma);
    }
}

kernel!(fma GeluRows { x: &'a [f32], out: &'a mut [f32] } -> () = gelu_rows);
kernel!(fma GeluGradRows { x: &'a [f32], grad: &'a [f32], out: &'a mut [f32] } -> () = gelu_grad_rows);

/// `erf(x)` by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7; with the polynomial
/// `exp` and f32 arithmetic, within 6e-7 of libm's `erff`: a few ulps near ±1).
#[inline(always)]
fn erf(x: f32, fma: bool) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let ax = x.abs();
    let t = 1.0 / madd_fused(P, ax, 1.0, fma);
    let mut poly = A[4];
    for &a in A[..4].iter().rev() {
        poly = madd_fused(poly, t, a, fma);
    }
    let y = 1.0 - poly * t * exp_fused(-ax * ax, fma);
    y.copysign(x)
}

/// Φ(x), the standard normal CDF.
#[inline(always)]
fn cdf(x: f32, fma: bool) -> f32 {
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2, fma))
}

#[inline(always)]
fn gelu(x: f32, fma: bool) -> f32 {
    x * cdf(x, fma)
}

/// `d gelu / dx = Φ(x) + x·φ(x)`.
#[inline(always)]
fn gelu_grad(x: f32, fma: bool) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    cdf(x, fma) + x * INV_SQRT_2PI * exp_fused(-0.5 * x * x, fma)
}

/// The forward's input, for the backward.
#[derive(Debug)]
pub(crate) struct HostGelu {
    x: Vec<f32>,
    shape: [usize; 3],
}

impl HostGelu {
    pub(crate) fn forward(x: Vec<f32>, shape: [usize; 3]) -> (HostGelu, Vec<f32>) {
        let (y, _) = filled(x.len(), CHUNK, x.par_chunks(CHUNK), |out, x| {
            vectorized_kernel(GeluRows { x, out })
        });
        (HostGelu { x, shape }, y)
    }

    pub(crate) fn backward(&self, grad: &[f32]) -> Vec<f32> {
        let pairs = self.x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK));
        filled(self.x.len(), CHUNK, pairs, |out, (x, grad)| {
            vectorized_kernel(GeluGradRows { x, grad, out })
        })
        .0
    }

    pub(crate) fn shape(&self) -> [usize; 3] {
        self.shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_within_1e6_of_libm() {
        let mut worst = 0.0f32;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            for fma in [false, true] {
                worst = worst.max((erf(x, fma) - libm::erff(x)).abs());
            }
        }
        assert!(worst < 1e-6, "max |erf − libm erf| = {worst}");
    }
}
