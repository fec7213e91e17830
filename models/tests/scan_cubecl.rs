//! The CubeCL selective-scan kernels (forward and all six gradients) against the host path and
//! the sequential tensor-op reference on NdArray. Built only with `--features cuda` (runs on an
//! NVIDIA GPU: `scripts/cuda-check.sh`) or `--features wgpu` (runs the same kernels through
//! wgpu, e.g. on Mesa's lavapipe Vulkan driver without a GPU). The golden Mamba test for these
//! backends is in `golden.rs`.
#![cfg(any(feature = "cuda", feature = "wgpu"))]

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Distribution, Tensor, TensorData, bf16, f16};
use labbook_models::fused::{ScanBackend, selective_scan, selective_scan_reference};

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
}

fn rel_err(out: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(out.len(), reference.len());
    assert!(out.iter().all(|v| v.is_finite()), "non-finite output");
    let num: f64 = out
        .iter()
        .zip(reference)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = reference
        .iter()
        .map(|b| (*b as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    num / den.max(1e-30)
}

/// Host data of one scan call: `[u, delta, a, b, c, d, r]` and the shape `[Bt, L, D, N]`.
struct Case {
    dims: [usize; 4],
    data: [Vec<f32>; 7],
}

impl Case {
    fn new(seed: u64, [bt, l, ch, n]: [usize; 4]) -> Self {
        let dev = Default::default();
        <NdArray as Backend>::seed(&dev, seed);
        let normal = Distribution::Normal(0.0, 1.0);
        let pre = Tensor::<NdArray, 3>::random([bt, l, ch], normal, &dev);
        Case {
            dims: [bt, l, ch, n],
            data: [
                host(Tensor::<NdArray, 3>::random([bt, l, ch], normal, &dev)),
                host((pre.exp() + 1.0).log() * 0.5),
                host(
                    Tensor::<NdArray, 2>::random([ch, n], Distribution::Normal(0.0, 0.5), &dev)
                        .exp()
                        .neg(),
                ),
                host(Tensor::<NdArray, 3>::random([bt, l, n], normal, &dev)),
                host(Tensor::<NdArray, 3>::random([bt, l, n], normal, &dev)),
                host(Tensor::<NdArray, 1>::random([ch], normal, &dev)),
                host(Tensor::<NdArray, 3>::random([bt, l, ch], normal, &dev)),
            ],
        }
    }

    /// The inputs on backend `B`, each tracked when `B` is an autodiff backend.
    #[allow(clippy::type_complexity)]
    fn on<B: Backend>(
        &self,
        dev: &B::Device,
    ) -> (
        Tensor<B, 3>,
        Tensor<B, 3>,
        Tensor<B, 2>,
        Tensor<B, 3>,
        Tensor<B, 3>,
        Tensor<B, 1>,
        Tensor<B, 3>,
    ) {
        let [bt, l, ch, n] = self.dims;
        let t3 = |v: &Vec<f32>, s: [usize; 3]| {
            Tensor::<B, 3>::from_data(TensorData::new(v.clone(), s), dev)
        };
        let [u, delta, a, b, c, d, r] = &self.data;
        (
            t3(u, [bt, l, ch]),
            t3(delta, [bt, l, ch]),
            Tensor::from_data(TensorData::new(a.clone(), [ch, n]), dev),
            t3(b, [bt, l, n]),
            t3(c, [bt, l, n]),
            Tensor::from_data(TensorData::new(d.clone(), [ch]), dev),
            t3(r, [bt, l, ch]),
        )
    }
}

impl Case {
    /// The same case with every input rounded to `dtype` (bf16 or f16), still held as f32.
    fn rounded(&self, dtype: DType) -> Case {
        let round = |v: &Vec<f32>| -> Vec<f32> {
            v.iter()
                .map(|&x| match dtype {
                    DType::BF16 => bf16::from_f32(x).to_f32(),
                    DType::F16 => f16::from_f32(x).to_f32(),
                    other => panic!("not a half type: {other:?}"),
                })
                .collect()
        };
        Case {
            dims: self.dims,
            data: self.data.each_ref().map(round),
        }
    }
}

/// `y` and the six gradients of `sum(y ⊙ r)` (or of `sum(y)` when `plain_sum`) on `B`, through
/// `selective_scan` (`reference = false`) or `selective_scan_reference`.
fn run<B: AutodiffBackend + ScanBackend>(
    case: &Case,
    reference: bool,
    plain_sum: bool,
) -> [Vec<f32>; 7] {
    run_as::<B>(case, reference, plain_sum, DType::F32)
}

/// [`run`] with the inputs cast to `dtype` on `B` first (the outputs come back as f32).
fn run_as<B: AutodiffBackend + ScanBackend>(
    case: &Case,
    reference: bool,
    plain_sum: bool,
    dtype: DType,
) -> [Vec<f32>; 7] {
    let dev = Default::default();
    let (u, delta, a, b, c, d, r) = case.on::<B>(&dev);
    let [u, delta, b, c, r] = [u, delta, b, c, r].map(|t| t.cast(dtype));
    let (a, d) = (a.cast(dtype), d.cast(dtype));
    let [u, delta, b, c] = [u, delta, b, c].map(|t| t.require_grad());
    let (a, d) = (a.require_grad(), d.require_grad());
    let scan = if reference {
        selective_scan_reference::<B>
    } else {
        selective_scan::<B>
    };
    let y = scan(
        u.clone(),
        delta.clone(),
        a.clone(),
        b.clone(),
        c.clone(),
        d.clone(),
    );
    let loss = if plain_sum {
        y.clone().sum()
    } else {
        (y.clone() * r).sum()
    };
    let grads = loss.backward();
    [
        host(y),
        host(u.grad(&grads).unwrap()),
        host(delta.grad(&grads).unwrap()),
        host(a.grad(&grads).unwrap()),
        host(b.grad(&grads).unwrap()),
        host(c.grad(&grads).unwrap()),
        host(d.grad(&grads).unwrap()),
    ]
}

const NAMES: [&str; 7] = ["y", "du", "ddelta", "da", "db", "dc", "dd"];

/// Kernel on `B` against the sequential reference and the fused host path on NdArray.
fn check<B: AutodiffBackend + ScanBackend>(shapes: &[[usize; 4]], plain_sum: bool) {
    for (i, &shape) in shapes.iter().enumerate() {
        let case = Case::new(1000 + i as u64, shape);
        let kernel = run::<B>(&case, false, plain_sum);
        let reference = run::<Autodiff<NdArray>>(&case, true, plain_sum);
        let fused_host = run::<Autodiff<NdArray>>(&case, false, plain_sum);
        for j in 0..7 {
            let tol = if j == 0 { 1e-5 } else { 1e-4 };
            let e = rel_err(&kernel[j], &reference[j]);
            let eh = rel_err(&kernel[j], &fused_host[j]);
            eprintln!(
                "{shape:?} {}: rel err {e:.2e} vs reference, {eh:.2e} vs host",
                NAMES[j]
            );
            assert!(e <= tol, "{shape:?}: {} rel err {e} vs reference", NAMES[j]);
            assert!(eh <= tol, "{shape:?}: {} rel err {eh} vs host", NAMES[j]);
        }
    }
}

/// The kernel on half inputs (`[train] precision`) against the f32 reference on the same
/// inputs rounded to that type: the kernel keeps its state and sums in f32, so what remains is
/// the rounding of each output to the half type (2⁻⁸ relative for bf16, 2⁻¹¹ for f16), with a
/// little headroom: `tol`.
fn check_half<B: AutodiffBackend + ScanBackend>(shapes: &[[usize; 4]], dtype: DType, tol: f64) {
    let dev = Default::default();
    assert!(
        B::supports_dtype(&dev, dtype),
        "this device has no {dtype:?}"
    );
    for (i, &shape) in shapes.iter().enumerate() {
        let case = Case::new(2000 + i as u64, shape);
        let kernel = run_as::<B>(&case, false, false, dtype);
        let reference = run::<Autodiff<NdArray>>(&case.rounded(dtype), true, false);
        for j in 0..7 {
            let e = rel_err(&kernel[j], &reference[j]);
            eprintln!("{dtype:?} {shape:?} {}: rel err {e:.2e}", NAMES[j]);
            assert!(e <= tol, "{dtype:?} {shape:?}: {} rel err {e}", NAMES[j]);
        }
    }
}

/// Shapes `[Bt, L, D, N]`: channels around the plane (8 / 32) and cube (64) sizes, lengths
/// around the checkpoint interval (16), and one model-sized row (d_model 768 → d_inner 1536).
const SHAPES: [[usize; 4]; 7] = [
    [1, 1, 1, 1],
    [2, 7, 3, 4],
    [2, 16, 9, 16],
    [3, 17, 70, 5],
    [1, 33, 64, 16],
    [2, 100, 130, 16],
    [1, 40, 1536, 16],
];

/// A long sequence: the checkpointed backward over many chunks.
const LONG: [[usize; 4]; 1] = [[1, 1000, 40, 16]];

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    type B = Autodiff<burn::backend::Cuda>;

    #[test]
    fn kernel_matches_reference_cuda() {
        check::<B>(&SHAPES, false);
    }

    #[test]
    fn kernel_matches_reference_long_cuda() {
        check::<B>(&LONG, false);
    }

    #[test]
    fn kernel_bf16_inputs_accumulate_in_f32_cuda() {
        check_half::<B>(&SHAPES[1..], DType::BF16, 4e-3);
    }

    #[test]
    fn kernel_broadcast_output_grad_cuda() {
        // `sum(y)` hands the backward a broadcast (stride-0) dL/dy.
        check::<B>(&SHAPES[1..4], true);
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    type B = Autodiff<burn::backend::Wgpu>;

    #[test]
    fn kernel_matches_reference_wgpu() {
        check::<B>(&SHAPES, false);
    }

    #[test]
    fn kernel_matches_reference_long_wgpu() {
        check::<B>(&LONG, false);
    }

    #[test]
    fn kernel_f16_inputs_accumulate_in_f32_wgpu() {
        check_half::<B>(&SHAPES[1..], DType::F16, 5e-4);
    }

    #[test]
    fn kernel_broadcast_output_grad_wgpu() {
        check::<B>(&SHAPES[1..4], true);
    }
}
