//! AdamW as one pass over each parameter on the host.
//!
//! burn's `AdamW` updates a parameter with about a dozen tensor ops (moments, bias
//! corrections, square root, division, decay), each a fresh allocation and a separate loop;
//! for the small parameters of a small model that overhead was a visible share of a step, on
//! one thread (docs/performance.md, Round 6). Here backends with host kernels download the parameter, its gradient
//! and moments, update them in one loop and upload the results. The state is burn's
//! [`AdamWState`], so checkpoints keep their format; other backends (CUDA) and AMSGrad states
//! run burn's `AdamW`.
use burn::module::{AutodiffModule, ModuleMapper, Param};
use burn::optim::LearningRate;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, SimpleOptimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::fused::{ScanBackend, download};

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

/// Decoupled weight decay for the parameters `no_decay` leaves in: `w ← w · keep` with
/// `keep = 1 − lr · weight_decay`. Applied just before an AdamW step that itself has no
/// decay, it is AdamW's own update for those parameters (the decay does not depend on the
/// step's moments), and no decay for the rest: in the Mamba reference, `A_log`, `D`,
/// biases, norm weights and (usually) embeddings are not decayed.
pub fn decay_selected<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: M,
    keep: f64,
    no_decay: &[String],
) -> M {
    if keep == 1.0 {
        return module;
    }
    module.map(&mut Decay {
        keep,
        no_decay,
        path: ParamPath::default(),
    })
}

/// Whether the parameter at `path` (field names with their parent's module type, as
/// burn's `enter_module` gives them) is left out of weight decay by the `no_decay` rules.
pub fn excluded_from_decay(path: &[(String, String)], no_decay: &[String]) -> bool {
    let Some((field, parent)) = path.last() else {
        return false;
    };
    let field = field.to_ascii_lowercase();
    let parent = parent.rsplit(':').next().unwrap_or("").to_ascii_lowercase();
    no_decay.iter().any(|rule| {
        let rule = rule.to_ascii_lowercase();
        field == rule || field.ends_with(&format!("_{rule}")) || parent.ends_with(&rule)
    })
}

/// Where a `ModuleMapper` is: `(field, container type)` of the modules entered, innermost
/// last, as burn's `enter_module` / `exit_module` give them (the last entry of a parameter's
/// path is its own field and its struct).
#[derive(Default)]
pub(crate) struct ParamPath(pub(crate) Vec<(String, String)>);

impl ParamPath {
    pub(crate) fn enter(&mut self, name: &str, container_type: &str) {
        self.0.push((name.to_string(), container_type.to_string()));
    }

    pub(crate) fn exit(&mut self) {
        self.0.pop();
    }
}

struct Decay<'a> {
    keep: f64,
    no_decay: &'a [String],
    path: ParamPath,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Decay<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if excluded_from_decay(&self.path.0, self.no_decay) {
            return param;
        }
        let keep = self.keep;
        // On the inner backend: a decayed parameter stays a leaf of the next step's graph.
        param.map(|t| {
            let grad = t.is_require_grad();
            let t = Tensor::from_inner(t.inner().mul_scalar(keep));
            if grad { t.require_grad() } else { t }
        })
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
mod decay_tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::Tensor;

    use super::{decay_selected, excluded_from_decay};
    use crate::model::LmConfig;

    type B = Autodiff<NdArray>;

    /// Every parameter's path and values, in module order.
    struct Collect(Vec<(String, String)>, Vec<(String, Vec<f32>)>);

    impl ModuleVisitor<B> for Collect {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.0.push((name.to_string(), container_type.to_string()));
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let path: Vec<String> = self.0.iter().map(|(n, _)| n.clone()).collect();
            let v = param.val().into_data().to_vec::<f32>().unwrap();
            self.1.push((path.join("."), v));
        }
    }

    fn params(m: &crate::model::Lm<B>) -> Vec<(String, Vec<f32>)> {
        let mut c = Collect(Vec::new(), Vec::new());
        m.visit(&mut c);
        c.1
    }

    /// The reference rule decays exactly the weight matrices of the projections, the conv
    /// and the head; `A_log`, `D`, biases, norms and the embedding keep their values.
    #[test]
    fn the_reference_rule_leaves_a_log_d_biases_norms_and_embeddings_alone() {
        let dev = Default::default();
        let lm = LmConfig::new(16, 8, "MA".into())
            .with_n_heads(2)
            .init::<B>(&dev);
        let before = params(&lm);
        let rules = crate::config::RunConfig::parse(
            "[model]\nkind = \"mamba\"\nd_model = 8\nn_layers = 1\n[task]\nkind = \"induction-heads\"\nvocab_size = 16\nseq_len = 8\n[train]\nsteps = 1\nbatch_size = 1\nlr = 1e-3\n",
            "x.toml",
        )
        .unwrap()
        .train
        .no_weight_decay;
        let after = params(&decay_selected(lm, 0.5, &rules));
        let mut decayed = Vec::new();
        for ((name, b), (_, a)) in before.iter().zip(&after) {
            if a == b {
                continue;
            }
            assert!(
                a.iter().zip(b).all(|(a, b)| (a - 0.5 * b).abs() <= 1e-7),
                "{name} changed other than by the decay"
            );
            let mut tail: Vec<&str> = name.rsplit('.').take(2).collect();
            tail.reverse();
            decayed.push(tail.join("."));
        }
        decayed.sort();
        decayed.dedup();
        // The weight matrices of every projection, the depthwise conv and the head.
        let mut want = [
            "in_proj.weight",
            "mixer.conv_weight",
            "x_proj.weight",
            "dt_proj.weight",
            "out_proj.weight",
            "qkv.weight",
            "out.weight",
            "fc1.weight",
            "fc2.weight",
            "head.weight",
        ]
        .map(String::from)
        .to_vec();
        want.sort();
        assert_eq!(
            decayed,
            want,
            "{:?}",
            before.iter().map(|p| &p.0).collect::<Vec<_>>()
        );
        let kept = |field: &str, parent: &str| {
            excluded_from_decay(&[(field.to_string(), parent.to_string())], &rules)
        };
        assert!(kept("a_log", "Struct:Mamba") && kept("d", "Struct:Mamba"));
        assert!(kept("conv_bias", "Struct:Mamba") && kept("bias", "Struct:Linear"));
        assert!(kept("gamma", "Struct:RmsNorm") && kept("weight", "Struct:Embedding"));
        assert!(!kept("weight", "Struct:Linear") && !kept("dt", "Struct:Mamba"));
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
