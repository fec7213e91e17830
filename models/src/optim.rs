//! AdamW as one pass over each parameter on the host.
//!
//! burn's `AdamW` updates a parameter with about a dozen tensor ops (moments, bias
//! corrections, square root, division, decay), each a fresh allocation and a separate loop;
//! for the ~25 small parameters of a d_model 64 model that was ~0.5 ms of a ~22 ms training
//! step, on one thread. Here backends with host kernels download the parameter, its gradient
//! and moments, update them in one loop and upload the results. The state is burn's
//! [`AdamWState`], so checkpoints keep their format; other backends (CUDA) and AMSGrad states
//! run burn's `AdamW`.
use burn::module::AutodiffModule;
use burn::optim::LearningRate;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, SimpleOptimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::scan::{ScanBackend, download};

/// AdamW's hyper-parameters (decoupled weight decay, bias-corrected moments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWParams {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

impl Default for AdamWParams {
    /// burn's `AdamWConfig` defaults.
    fn default() -> Self {
        AdamWParams {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: 1e-4,
        }
    }
}

/// AdamW with a host loop where the backend has host kernels; see the module docs.
#[derive(Clone)]
pub struct HostAdamW {
    params: AdamWParams,
    /// burn's AdamW with the same hyper-parameters, for the other backends.
    tensor_ops: AdamW,
}

impl HostAdamW {
    pub fn new(params: AdamWParams) -> Self {
        let tensor_ops = AdamWConfig::new()
            .with_beta_1(params.beta_1)
            .with_beta_2(params.beta_2)
            .with_epsilon(params.epsilon)
            .with_weight_decay(params.weight_decay)
            .build();
        HostAdamW { params, tensor_ops }
    }

    /// The optimizer for module `M` (what `AdamWConfig::init` returns for burn's AdamW).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        params: AdamWParams,
    ) -> OptimizerAdaptor<Self, M, B>
    where
        B::InnerBackend: ScanBackend,
    {
        OptimizerAdaptor::from(Self::new(params))
    }
}

/// A tensor's values as f32 (through the host ops' download, which avoids ndarray's
/// element-by-element copy of shared arrays).
fn host<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    download::<B, D>(t.into_primitive().tensor()).0
}

impl<B: ScanBackend> SimpleOptimizer<B> for HostAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let amsgrad = state
            .as_ref()
            .is_some_and(|s| s.momentum.max_moment_2.is_some());
        if !B::HOST_KERNELS || amsgrad {
            return self.tensor_ops.step(lr, tensor, grad, state);
        }
        let (device, shape) = (tensor.device(), tensor.shape());
        let AdamWParams {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
        } = self.params;
        let mut w = host(tensor);
        let g = host(grad);
        let (time, mut m, mut v) = match state {
            Some(s) => (
                s.momentum.time + 1,
                host(s.momentum.moment_1),
                host(s.momentum.moment_2),
            ),
            // Zero moments make the first update burn's `(1 − β)·g` and `(1 − β)·g²`.
            None => (1, vec![0.0; g.len()], vec![0.0; g.len()]),
        };
        let time_i = i32::try_from(time).unwrap_or(i32::MAX);
        let (c1, c2) = (1.0 - beta_1.powi(time_i), 1.0 - beta_2.powi(time_i));
        let lr = lr as f32;
        let keep = 1.0 - lr * weight_decay;
        for (((w, &g), m), v) in w.iter_mut().zip(&g).zip(&mut m).zip(&mut v) {
            *m = beta_1 * *m + (1.0 - beta_1) * g;
            *v = beta_2 * *v + (1.0 - beta_2) * g * g;
            let delta = (*m / c1) / ((*v / c2).sqrt() + epsilon);
            *w = *w * keep - lr * delta;
        }
        let up =
            |x: Vec<f32>| Tensor::<B, D>::from_data(TensorData::new(x, shape.clone()), &device);
        let momentum = AdaptiveMomentumState::new(time, up(m), up(v));
        (up(w), Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
    use burn::tensor::{Distribution, Tensor, backend::Backend};

    use super::{AdamWParams, HostAdamW};

    type B = Autodiff<NdArray>;

    /// Five steps of the host AdamW and of burn's on the same model and data: the weights
    /// agree (the host loop fuses the same arithmetic, so only rounding differs).
    #[test]
    fn host_adamw_matches_burn_adamw() {
        let dev = Default::default();
        B::seed(&dev, 7);
        let params = AdamWParams {
            beta_1: 0.9,
            beta_2: 0.95,
            epsilon: 1e-8,
            weight_decay: 0.1,
        };
        // Initialised parameters (a lazy one would be drawn separately in each clone).
        let normal = Distribution::Normal(0.0, 0.5);
        let mut start: Linear<B> = LinearConfig::new(8, 5).init(&dev);
        start.weight = Param::from_tensor(Tensor::random([8, 5], normal, &dev));
        start.bias = Some(Param::from_tensor(Tensor::random([5], normal, &dev)));
        let x = Tensor::<B, 2>::random([4, 8], Distribution::Normal(0.0, 1.0), &dev);
        let mut host = HostAdamW::init::<B, Linear<B>>(params);
        let mut reference = AdamWConfig::new()
            .with_beta_1(params.beta_1)
            .with_beta_2(params.beta_2)
            .with_epsilon(params.epsilon)
            .with_weight_decay(params.weight_decay)
            .init::<B, Linear<B>>();
        let weights = |m: &Linear<B>| -> Vec<f32> {
            let w: Param<Tensor<B, 2>> = m.weight.clone();
            let mut v = w.val().into_data().into_vec::<f32>().unwrap();
            v.extend(
                m.bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .into_data()
                    .into_vec::<f32>()
                    .unwrap(),
            );
            v
        };
        let before = weights(&start);
        let (mut a, mut b) = (start.clone(), start);
        for step in 0..5 {
            let lr = 1e-2 * (step + 1) as f64;
            let loss = |m: &Linear<B>| (m.forward(x.clone()) * m.forward(x.clone())).sum();
            let ga = GradientsParams::from_grads(loss(&a).backward(), &a);
            a = host.step(lr, a, ga);
            let gb = GradientsParams::from_grads(loss(&b).backward(), &b);
            b = reference.step(lr, b, gb);
        }
        let (wa, wb) = (weights(&a), weights(&b));
        assert_eq!(wa.len(), wb.len());
        // The steps moved the weights (lr up to 0.05 over five steps), so agreeing means more
        // than both leaving them alone.
        let moved = wa
            .iter()
            .zip(&before)
            .filter(|(p, q)| (*p - *q).abs() > 1e-3);
        assert!(
            moved.count() > wa.len() / 2,
            "the optimizer barely moved the weights"
        );
        for (i, (p, q)) in wa.iter().zip(&wb).enumerate() {
            assert!(
                (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                "weight {i}: host {p}, burn {q}"
            );
        }
    }
}
