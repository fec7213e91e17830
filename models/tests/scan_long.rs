//! The fused selective scan at L = 4,096 against `tests/data/scan_long.safetensors`, computed in
//! float64 by the public `mambapy` (see `tests/data/README.md` and
//! `scripts/golden_long_scan.py`): decays within 1e-9 of 1, decays that underflow, and
//! everything between, over a sequence long enough for f32 errors to accumulate.
use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use labbook_models::fused::{ScanBackend, selective_scan};
use safetensors::{Dtype, SafeTensors};

mod common;
use common::{host, rel_err_of};

const BATCH: usize = 1;
const L: usize = 4096;
const CH: usize = 8;
const N: usize = 16;

/// `count` numbers `k / 2^24` in `[0, 1)` from a xorshift generator, exactly as the script
/// makes them.
fn unit_values(count: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// `2v − 1` for each of [`unit_values`].
fn signed_values(count: usize, seed: u64) -> Vec<f32> {
    unit_values(count, seed)
        .into_iter()
        .map(|v| 2.0 * v - 1.0)
        .collect()
}

struct Inputs {
    u: Vec<f32>,
    delta: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    d: Vec<f32>,
    r: Vec<f32>,
}

/// The script's inputs, rebuilt with the same f32 operations in the same order.
fn inputs() -> Inputs {
    let mut delta: Vec<f32> = unit_values(BATCH * L * CH, 1)
        .into_iter()
        .map(|v| 3.0 * v * v * v * v * v * v)
        .collect();
    for t in (0..L).step_by(97) {
        delta[t * CH..(t + 1) * CH].fill(30.0);
    }
    Inputs {
        u: signed_values(BATCH * L * CH, 2),
        delta,
        a: unit_values(CH * N, 3)
            .into_iter()
            .map(|w| -(20.0 * w * w * w * w + 1e-3))
            .collect(),
        b: signed_values(BATCH * L * N, 4),
        c: signed_values(BATCH * L * N, 5),
        d: signed_values(CH, 6),
        r: signed_values(BATCH * L * CH, 7),
    }
}

fn golden(name: &str) -> Vec<f64> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/scan_long.safetensors"
    );
    let bytes = std::fs::read(path).expect("golden file in models/tests/data");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("{name} in golden file"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
        .collect()
}

fn tensor<B: Backend, const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Default::default())
}

/// Every value finite, `‖got − want‖ / ‖want‖ ≤ 1e-4`, and no single value off by more than
/// 1e-3 of the largest reference magnitude (so that a local error cannot hide in the norm).
fn assert_close(name: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    if let Some(i) = got.iter().position(|v| !v.is_finite()) {
        panic!("{name}[{i}] = {} (reference {})", got[i], want[i]);
    }
    let err = rel_err_of(got, want);
    assert!(err <= 1e-4, "{name}: relative error {err:.3e}");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-3 * scale,
            "{name}[{i}] = {g}, reference {w} (largest |reference| {scale})"
        );
    }
}

fn long_scan_matches_float64_reference<B: AutodiffBackend + ScanBackend>() {
    let x = inputs();
    let leaf = |t: Tensor<B, 3>| t.require_grad();
    let u = leaf(tensor(&x.u, [BATCH, L, CH]));
    let delta = leaf(tensor(&x.delta, [BATCH, L, CH]));
    let a = tensor::<B, 2>(&x.a, [CH, N]).require_grad();
    let b = leaf(tensor(&x.b, [BATCH, L, N]));
    let c = leaf(tensor(&x.c, [BATCH, L, N]));
    let d = tensor::<B, 1>(&x.d, [CH]).require_grad();
    let y = selective_scan(
        u.clone(),
        delta.clone(),
        a.clone(),
        b.clone(),
        c.clone(),
        d.clone(),
    );
    assert_close("y", &host(y.clone()), &golden("y"));
    let grads = (y * tensor::<B, 3>(&x.r, [BATCH, L, CH])).sum().backward();
    let g3 = |t: &Tensor<B, 3>| host(t.grad(&grads).expect("gradient"));
    assert_close("grad.u", &g3(&u), &golden("grad.u"));
    assert_close("grad.delta", &g3(&delta), &golden("grad.delta"));
    assert_close("grad.b", &g3(&b), &golden("grad.b"));
    assert_close("grad.c", &g3(&c), &golden("grad.c"));
    assert_close("grad.a", &host(a.grad(&grads).unwrap()), &golden("grad.a"));
    assert_close("grad.d", &host(d.grad(&grads).unwrap()), &golden("grad.d"));
}

#[test]
fn long_scan_matches_float64_reference_ndarray() {
    long_scan_matches_float64_reference::<Autodiff<NdArray>>();
}

#[test]
fn long_scan_matches_float64_reference_flex() {
    long_scan_matches_float64_reference::<Autodiff<Flex>>();
}
