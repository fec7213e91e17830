//! `[train] precision = "bf16" | "f16"`: mixed-precision training on the CubeCL backends.
//!
//! The run's weights and AdamW state stay f32 (the master copy, which is what checkpoints,
//! exports and evaluation see). Each micro-step casts the weights to the half type
//! ([`working_copy`]), runs the forward and backward there (the selective scan reads half
//! inputs and accumulates in f32; the loss is taken in f32), and casts the gradients back to
//! f32 ([`grads_to_master`]) before the all-reduce, the clip and the optimiser step.
//!
//! f16's range is narrow, so its loss is scaled before the backward and the gradients
//! unscaled after ([`LossScale`], PyTorch's `GradScaler` rule and defaults); bf16 has f32's
//! range and needs no scaling.
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::optim::ParamPath;

/// `[train] precision`: the float type of the forward and backward passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (the default, and the only choice on the CPU backends).
    #[default]
    F32,
    /// bfloat16 compute with f32 master weights: what an A100 or H100 is fastest at.
    Bf16,
    /// float16 compute with f32 master weights and dynamic loss scaling.
    F16,
}

impl Precision {
    /// The compute dtype.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    /// True for `bf16` and `f16`.
    pub fn is_half(self) -> bool {
        self != Precision::F32
    }

    /// Every precision, in config spelling order.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| format!("unknown precision `{s}`: expected f32, bf16 or f16"))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The dtype sums and recurrences are kept in for tensors of `dtype`: f32 for the half types
/// (and f32), f64 for f64. The CubeCL kernels and the tensor-op attention share it.
pub(crate) fn accumulation_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// Casts every float parameter to a dtype, keeping its id, as a fresh leaf of the graph: the
/// copy's gradients carry the master parameters' ids, and nothing flows back into the master.
/// The Mamba mixers' `A_log` and `D` stay f32: the scan reads them as f32 (they feed only
/// the decay `exp(Δ·A)` and the skip, where bf16's 8 bits would cost the most).
struct CastParams {
    dtype: FloatDType,
    path: ParamPath,
}

/// Parameters kept f32 in the working copy: `(field, container type)`.
const KEPT_F32: [(&str, &str); 2] = [("a_log", "Struct:Mamba"), ("d", "Struct:Mamba")];

impl<B: AutodiffBackend> ModuleMapper<B> for CastParams {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let keep = self
            .path
            .0
            .last()
            .is_some_and(|(f, c)| KEPT_F32.contains(&(f.as_str(), c.as_str())));
        let dtype = if keep { FloatDType::F32 } else { self.dtype };
        let tensor = Tensor::from_inner(tensor.inner().cast(dtype)).require_grad();
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// The model whose forward and backward a micro-step runs: `master` itself in f32, else a
/// copy with its parameters cast to the half type.
pub(crate) fn working_copy<B: AutodiffBackend, M: AutodiffModule<B>>(
    master: &M,
    precision: Precision,
) -> M {
    if precision.is_half() {
        master.clone().map(&mut CastParams {
            dtype: precision.dtype(),
            path: ParamPath::default(),
        })
    } else {
        master.clone()
    }
}

/// Replaces each of `master`'s gradients in `grads` by its f32 cast times `unscale`.
struct GradsToF32<'a> {
    grads: &'a mut GradientsParams,
    unscale: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradsToF32<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let id: ParamId = param.id;
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(id) {
            let mut g = g.cast(FloatDType::F32);
            if self.unscale != 1.0 {
                g = g.mul_scalar(self.unscale);
            }
            self.grads.register::<B::InnerBackend, D>(id, g);
        }
    }
}

/// The gradients of a working copy (see [`working_copy`]) as f32 gradients of `master`,
/// divided by the loss scale. A no-op for f32 runs.
pub(crate) fn grads_to_master<B: AutodiffBackend, M: AutodiffModule<B>>(
    master: &M,
    mut grads: GradientsParams,
    precision: Precision,
    loss_scale: f64,
) -> GradientsParams {
    if precision.is_half() {
        master.visit(&mut GradsToF32 {
            grads: &mut grads,
            unscale: 1.0 / loss_scale,
        });
    }
    grads
}

/// f16's dynamic loss scale: the loss is multiplied by [`LossScale::factor`] before the
/// backward; a step whose gradients overflow is skipped and halves the factor, and every
/// [`LossScale::GROWTH_INTERVAL`] good steps in a row double it. The rule and constants are
/// PyTorch's `torch.amp.GradScaler` defaults. Every replica of a data-parallel run sees the
/// same all-reduced gradients, so they all make the same decisions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScale {
    factor: f64,
    good_steps: u32,
    dynamic: bool,
}

impl LossScale {
    /// The first factor (2¹⁶).
    pub const INITIAL: f64 = 65536.0;
    /// Good steps before the factor doubles.
    pub const GROWTH_INTERVAL: u32 = 2000;

    /// Dynamic for f16, a constant 1 otherwise.
    pub fn new(precision: Precision) -> Self {
        let dynamic = precision == Precision::F16;
        LossScale {
            factor: if dynamic { Self::INITIAL } else { 1.0 },
            good_steps: 0,
            dynamic,
        }
    }

    /// What the loss is multiplied by before the backward.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// Records whether this step's unscaled gradients were finite; returns whether the
    /// optimiser may take the step. Without dynamic scaling every step is taken (a
    /// non-finite loss then stops the run, as in f32).
    pub fn update(&mut self, grads_finite: bool) -> bool {
        if !self.dynamic {
            return true;
        }
        if !grads_finite {
            self.factor = (self.factor / 2.0).max(f64::MIN_POSITIVE);
            self.good_steps = 0;
            return false;
        }
        self.good_steps += 1;
        if self.good_steps == Self::GROWTH_INTERVAL {
            self.factor *= 2.0;
            self.good_steps = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{DType, Distribution};

    #[test]
    fn f16_scale_halves_on_overflow_and_doubles_after_a_clean_stretch() {
        let mut s = LossScale::new(Precision::F16);
        assert_eq!(s.factor(), LossScale::INITIAL);
        assert!(!s.update(false));
        assert_eq!(s.factor(), LossScale::INITIAL / 2.0);
        for _ in 0..LossScale::GROWTH_INTERVAL - 1 {
            assert!(s.update(true));
        }
        assert_eq!(s.factor(), LossScale::INITIAL / 2.0);
        assert!(s.update(true));
        assert_eq!(s.factor(), LossScale::INITIAL);
        // An overflow restarts the count.
        assert!(!s.update(false));
        assert!(s.update(true));
        assert_eq!(s.factor(), LossScale::INITIAL / 2.0);
    }

    #[test]
    fn bf16_and_f32_never_scale_nor_skip() {
        for p in [Precision::F32, Precision::Bf16] {
            let mut s = LossScale::new(p);
            assert_eq!(s.factor(), 1.0);
            assert!(s.update(false));
            assert_eq!(s.factor(), 1.0);
        }
    }

    type B = Autodiff<burn::backend::Flex>;

    /// On Flex (a CPU backend with half types): the copy's parameters are half, its
    /// gradients come back f32 under the master's ids, and the master gets no gradient of
    /// its own.
    #[test]
    fn working_copy_trains_in_half_and_hands_f32_grads_to_the_master() {
        let device = Default::default();
        let master: Linear<B> = LinearConfig::new(4, 3).init(&device);
        let work = working_copy(&master, Precision::Bf16);
        assert_eq!(work.weight.val().dtype(), DType::BF16);
        assert_eq!(work.weight.id, master.weight.id);
        let x = Tensor::<B, 2>::random([5, 4], Distribution::Default, &device).cast(DType::BF16);
        let loss = work
            .forward(x.clone())
            .sum()
            .cast(DType::F32)
            .mul_scalar(8.0);
        let grads = GradientsParams::from_grads(loss.backward(), &work);
        let grads = grads_to_master(&master, grads, Precision::Bf16, 8.0);
        let g = grads
            .get::<burn::backend::Flex, 2>(master.weight.id)
            .expect("the master's weight has a gradient");
        assert_eq!(g.dtype(), DType::F32);
        // d(sum(x·W + b))/dW[i][j] = Σ_rows x[row][i]: the unscaled f32 gradient.
        let want = x
            .inner()
            .cast(DType::F32)
            .sum_dim(0)
            .reshape([4, 1])
            .repeat_dim(1, 3);
        // bf16 keeps 8 significant bits: the gradient was summed in bf16 (scaled by 8).
        let bound = want.clone().abs().max().into_scalar() / 128.0;
        let diff = (g - want).abs().max().into_scalar();
        assert!(diff <= bound, "gradient off by {diff} (bound {bound})");
        assert_eq!(master.num_params(), work.num_params());
    }

    /// In a model's copy the Mamba mixers' `A_log` and `D` stay f32 (the scan reads them so);
    /// everything else, projections, norms and embedding included, is the half type.
    #[test]
    fn working_copy_keeps_a_log_and_d_in_f32() {
        let device = Default::default();
        let master: crate::model::Lm<B> =
            crate::model::LmConfig::new(16, 8, "MA".to_string()).init_seeded(0, &device);
        let work = working_copy(&master, Precision::Bf16);
        let mixer = &work.mamba_blocks().next().expect("a Mamba block").mixer;
        assert_eq!(mixer.a_log.val().dtype(), DType::F32);
        assert_eq!(mixer.d.val().dtype(), DType::F32);
        assert_eq!(mixer.in_proj.weight.val().dtype(), DType::BF16);
        assert_eq!(work.embedding.weight.val().dtype(), DType::BF16);
        let mut halves = 0;
        let mut count = |dtype: DType| halves += usize::from(dtype == DType::BF16);
        for block in work.mamba_blocks() {
            count(block.norm.gamma.val().dtype());
            count(block.mixer.out_proj.weight.val().dtype());
        }
        assert_eq!(halves, 2);
    }
}
