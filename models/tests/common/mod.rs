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

/// Serialises a test binary's autodiff tests: burn 0.21's autodiff keeps one process-wide
/// graph registry (`burn-autodiff` `runtime/graph.rs`), and with several tests building and
/// running backward graphs on parallel threads a gradient was occasionally missing
/// (`lm_loss_matches_masked_loss_of_the_logits`, once in CI). The tests are fast; holding
/// this for each costs little.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A two-layer hybrid (`MA`, RoPE) on induction heads for 20 steps, without `batch_size`
/// (each test adds its own): the run the curve-following tests compare.
pub const TINY_HYBRID_RUN: &str = r#"
[model]
kind = "hybrid"
pattern = "MA"
d_model = 16
n_layers = 2
d_state = 4
n_heads = 2
positional = "rope"

[task]
kind = "induction-heads"
vocab_size = 16
seq_len = 32
eval_seq_lens = [32]
eval_samples = 8

[train]
steps = 20
lr = 3e-3
warmup_steps = 2
seed = 3
"#;

/// The largest relative difference between two curves, point by point.
pub fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1e-12))
        .fold(0.0, f64::max)
}
