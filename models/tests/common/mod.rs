//! Helpers shared by the engine's integration tests.
// Each test binary compiles this module and uses its own subset.
#![allow(dead_code)]

use burn::tensor::{Tensor, backend::Backend};

/// A tensor's values as host `f64`s, row-major.
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
}

/// `‖out − reference‖ / ‖reference‖` over all elements (the denominator floored at 1e-30, so
/// two zero vectors compare as equal).
pub fn rel_err_of(out: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(out.len(), reference.len(), "rel_err: lengths");
    let num: f64 = out
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    let den: f64 = reference.iter().map(|b| b * b).sum::<f64>().sqrt();
    num / den.max(1e-30)
}

/// [`rel_err_of`] of two tensors of the same shape.
pub fn rel_err<B: Backend, const D: usize>(out: Tensor<B, D>, reference: Tensor<B, D>) -> f64 {
    rel_err_of(&host(out), &host(reference))
}
