//! Element-wise maps of the fused host ops (softplus, SiLU, the gate and their derivatives),
//! split into rayon tasks and vectorised for the CPU's best ISA.
//!
//! The maps are plain loops over slices of a generic closure; [`vectorized`] calls the loop
//! inside a function compiled for AVX-512 or AVX2 + FMA, and because the closure is inlined
//! there it is compiled with those features too. (Called per element through rayon's `map`,
//! the same math ran scalar: docs/performance.md, Round 3.)
use rayon::prelude::*;

use super::Isa;
use crate::fused::fill::{filled, filled2};

/// Work for [`vectorized_kernel`]: `run` is `#[inline(always)]` and so is the loop it calls, so
/// the loop is compiled inside each per-ISA copy. (A closure's body is inlined only when the
/// compiler finds it small enough; larger row loops passed to [`vectorized`] stayed out of
/// line, in baseline SSE code.) Declared with [`kernel!`].
pub(crate) trait Kernel {
    type Out;
    /// `fma`: true in the AVX2/AVX-512 copies (see [`vectorized`]).
    fn run(self, fma: bool) -> Self::Out;
}

/// `kernel!(Name { arg: Type, … } -> Out = function)` declares a [`Kernel`] that calls
/// `function(arg, …)`; `kernel!(fma Name …)` one that calls `function(arg, …, fma)`.
/// `function` must be `#[inline(always)]`.
macro_rules! kernel {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? } -> $out:ty = $func:path) => {
        kernel!(@impl $name { $($field: $ty),* } -> $out, |k, _fma| $func($(k.$field),*));
    };
    (fma $name:ident { $($field:ident : $ty:ty),* $(,)? } -> $out:ty = $func:path) => {
        kernel!(@impl $name { $($field: $ty),* } -> $out, |k, fma| $func($(k.$field,)* fma));
    };
    (@impl $name:ident { $($field:ident : $ty:ty),* } -> $out:ty,
        |$k:ident, $fma:ident| $call:expr) => {
        pub(crate) struct $name<'a> {
            $(pub(crate) $field: $ty),*
        }
        impl $crate::fused::host::elementwise::Kernel for $name<'_> {
            type Out = $out;
            #[inline(always)]
            fn run(self, $fma: bool) -> $out {
                let $k = self;
                $call
            }
        }
    };
}
pub(crate) use kernel;

/// Runs `k` in a copy compiled for the best vector ISA the CPU has.
#[inline(always)]
pub(crate) fn vectorized_kernel<K: Kernel>(k: K) -> K::Out {
    match Isa::detect() {
        // SAFETY: `detect` saw the features each copy is compiled for.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { kernel_avx512(k) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { kernel_avx2(k) },
        _ => k.run(false),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
fn kernel_avx512<K: Kernel>(k: K) -> K::Out {
    k.run(true)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn kernel_avx2<K: Kernel>(k: K) -> K::Out {
    k.run(true)
}

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// Runs `body` in a copy compiled for the best vector ISA the CPU has (for small loop bodies;
/// see [`Kernel`] for row loops). `body` gets `fma`: true in the AVX2/AVX-512 copies, where
/// `f32::mul_add` is one instruction, false in the baseline one, where it is a libm call. Once
/// inlined it is a constant, so the math helpers that take it (`host::softplus`, …) use fused
/// multiply-adds exactly where they are cheap (Rust never fuses `a * b + c` by itself).
#[inline(always)]
fn vectorized<R>(body: impl FnOnce(bool) -> R) -> R {
    match Isa::detect() {
        // SAFETY: `detect` saw the features each copy is compiled for.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { with_avx512(body) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { with_avx2(body) },
        _ => body(false),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
fn with_avx512<R>(body: impl FnOnce(bool) -> R) -> R {
    body(true)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn with_avx2<R>(body: impl FnOnce(bool) -> R) -> R {
    body(true)
}

/// `f(x_i, fma)` for every element (`fma` as [`vectorized`] passes it).
pub(crate) fn map1(x: &[f32], f: impl Fn(f32, bool) -> f32 + Sync) -> Vec<f32> {
    filled(x.len(), CHUNK, x.par_chunks(CHUNK), |o, x| {
        vectorized(|fma| {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = f(x, fma);
            }
        })
    })
    .0
}

/// `f(x_i, y_i, fma)` for every element; `x` and `y` have the same length.
pub(crate) fn map2(x: &[f32], y: &[f32], f: impl Fn(f32, f32, bool) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(x.len(), y.len(), "map2: lengths");
    let xy = x.par_chunks(CHUNK).zip(y.par_chunks(CHUNK));
    filled(x.len(), CHUNK, xy, |o, (x, y)| {
        vectorized(|fma| {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                *o = f(x, y, fma);
            }
        })
    })
    .0
}

/// `d_i = f(d_i, x_i, fma)` for every element.
pub(crate) fn update(d: &mut [f32], x: &[f32], f: impl Fn(f32, f32, bool) -> f32 + Sync) {
    assert_eq!(d.len(), x.len(), "update: lengths");
    d.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(d, x)| {
            vectorized(|fma| {
                for (d, &x) in d.iter_mut().zip(x) {
                    *d = f(*d, x, fma);
                }
            })
        });
}

/// Two outputs `f(x_i, y_i, z_i, fma)` for every element.
pub(crate) fn map3_2(
    x: &[f32],
    y: &[f32],
    z: &[f32],
    f: impl Fn(f32, f32, f32, bool) -> (f32, f32) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    assert!(x.len() == y.len() && y.len() == z.len(), "map3_2: lengths");
    let xyz = x
        .par_chunks(CHUNK)
        .zip(y.par_chunks(CHUNK))
        .zip(z.par_chunks(CHUNK));
    let (p, q, _) = filled2([x.len(); 2], [CHUNK; 2], xyz, |p, q, ((x, y), z)| {
        vectorized(|fma| {
            for ((((p, q), &x), &y), &z) in p.iter_mut().zip(q).zip(x).zip(y).zip(z) {
                (*p, *q) = f(x, y, z, fma);
            }
        })
    });
    (p, q)
}

#[cfg(test)]
mod tests {
    use super::{map1, map2, map3_2, update};

    #[test]
    fn maps_apply_to_every_element_across_chunks() {
        let n = super::CHUNK * 2 + 5;
        let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        assert_eq!(
            map1(&x, |a, _| a * 2.0),
            x.iter().map(|a| a * 2.0).collect::<Vec<_>>()
        );
        let s = map2(&x, &y, |a, b, _| a - b);
        assert!(s.iter().enumerate().all(|(i, &v)| v == x[i] - y[i]));
        let mut d = y.clone();
        update(&mut d, &x, |d, a, _| d * a);
        assert!(d.iter().enumerate().all(|(i, &v)| v == y[i] * x[i]));
        let (p, q) = map3_2(&x, &y, &s, |a, b, c, _| (a + b, c));
        assert!(p.iter().enumerate().all(|(i, &v)| v == x[i] + y[i]));
        assert_eq!(q, s);
    }
}
