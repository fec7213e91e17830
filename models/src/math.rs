//! Tensor math shared by the model, the fused ops and the training loop. A leaf: it imports
//! nothing of this crate, so `model`, `scan` and `train` can all use it without importing
//! each other.
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, backend::Backend};

/// Numerically stable softplus: max(x, 0) + log(1 + exp(−|x|)).
pub fn softplus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone().clamp_min(0.0) + (x.abs().neg().exp() + 1.0).log()
}

/// Weighted cross-entropy and number of correct argmax predictions on weighted positions.
/// `logits: [batch, L, vocab]`, `targets: [batch, L]`, `weights: [batch, L]`.
pub fn masked_loss<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [b, l, _] = logits.dims();
    let logp = log_softmax(logits.clone(), 2); // [batch, L, vocab]
    let picked = logp
        .gather(2, targets.clone().unsqueeze_dim::<3>(2))
        .reshape([b, l]); // [batch, L]
    let count = weights.clone().sum().clamp_min(1.0); // [1]
    let loss = (picked * weights.clone()).sum().neg() / count; // [1]
    let pred = logits.detach().argmax(2).reshape([b, l]); // [batch, L]
    let correct = (pred.equal(targets).float() * weights.detach()).sum(); // [1]
    (loss, correct)
}
