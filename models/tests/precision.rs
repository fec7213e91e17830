//! `[train] precision`: half precision is refused where it cannot run, and on a CubeCL backend a
//! mixed-precision run follows the f32 run's loss and gradient-norm curves. The CubeCL runs are
//! built only with `--features wgpu` (f16, e.g. on Mesa's lavapipe without a GPU) or `cuda`
//! (bf16 and f16, `scripts/cuda-check.sh`).
use labbook_models::RunConfig;

mod common;
use common::TINY_HYBRID_RUN;

/// The curve tests' run with its batch.
fn base() -> String {
    format!("{TINY_HYBRID_RUN}batch_size = 8\n")
}

#[test]
fn half_precision_on_cpu_and_unknown_precisions_are_refused_by_key() {
    for (extra, says) in [
        ("precision = \"bf16\"\n", "runs on CUDA only"),
        (
            "precision = \"f16\"\nbackend = \"cpu\"\n",
            "runs on CUDA only",
        ),
        ("precision = \"fp8\"\n", "unknown variant `fp8`"),
    ] {
        let err = RunConfig::parse(&format!("{}{extra}", base()), "precision.toml")
            .and_then(|c| c.validate().map(|_| c))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.precision") && err.contains(says),
            "{extra}: {err}"
        );
    }
    let f32_ok = RunConfig::parse(
        &format!("{}precision = \"f32\"\n", base()),
        "precision.toml",
    );
    f32_ok.unwrap().validate().unwrap();
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cubecl {
    use super::*;
    use crate::common::max_rel_diff;
    use burn::backend::Autodiff;
    use burn::tensor::backend::AutodiffBackend;
    use labbook_models::fused::ScanBackend;
    use labbook_models::train::train_with;
    use labbook_models::{TrainObserver, TrainOptions};
    use std::sync::atomic::AtomicBool;

    /// Each step's loss, gradient norm and (f16) loss scale.
    #[derive(Default)]
    struct Curves {
        loss: Vec<f64>,
        grad_norm: Vec<f64>,
        loss_scale: Vec<f64>,
    }

    impl TrainObserver for Curves {
        fn on_step(&mut self, _step: u64, _total: u64, metrics: &[(String, f64)]) {
            let get = |key: &str| metrics.iter().find(|(k, _)| k == key).map(|m| m.1);
            self.loss.push(get("loss").expect("loss"));
            self.grad_norm.push(get("grad_norm").expect("grad_norm"));
            self.loss_scale.extend(get("loss_scale"));
        }
        fn on_eval(&mut self, _step: u64, _metrics: &[(String, f64)]) {}
    }

    /// The config's `backend` only passes validation (a half precision needs a GPU backend
    /// there); `train_with` runs on `B`'s default device whatever it says.
    fn curves<B>(precision: &str) -> Curves
    where
        B: AutodiffBackend + ScanBackend,
        B::InnerBackend: ScanBackend,
    {
        let text = format!(
            "{}backend = \"cuda\"\nprecision = \"{precision}\"\n",
            base()
        );
        let cfg = RunConfig::parse(&text, "precision.toml").unwrap();
        let cancel = AtomicBool::new(false);
        let opts = TrainOptions {
            checkpoint_dir: None,
            cancel: &cancel,
            resume_from: None,
        };
        let mut obs = Curves::default();
        train_with::<B>(&cfg, opts, &mut obs, &Default::default())
            .unwrap_or_else(|e| panic!("{precision}: {e}"));
        assert_eq!(obs.loss.len(), 20, "{precision}");
        obs
    }

    /// A half-precision run against the f32 run from the same seed and batches. `tol` bounds
    /// the relative difference of every step's loss and gradient norm (see the callers for
    /// why each bound).
    fn follows_f32<B>(precision: &str, tol: f64)
    where
        B: AutodiffBackend + ScanBackend,
        B::InnerBackend: ScanBackend,
    {
        let full = curves::<B>("f32");
        let half = curves::<B>(precision);
        let (dl, dg) = (
            max_rel_diff(&half.loss, &full.loss),
            max_rel_diff(&half.grad_norm, &full.grad_norm),
        );
        println!(
            "{precision} vs f32 over 20 steps: loss max rel diff {dl:.2e}, grad norm {dg:.2e}\n\
             loss f32 {:?}\nloss {precision} {:?}",
            full.loss, half.loss
        );
        assert!(dl < tol, "{precision}: loss rel diff {dl}");
        // Gradients left scaled (or in half) would show here first: Adam hides a scale.
        assert!(dg < tol, "{precision}: grad norm rel diff {dg}");
        assert!(
            dl > 0.0,
            "{precision} gave the f32 losses bit for bit: no half compute"
        );
        assert!(full.loss_scale.is_empty());
        if precision == "f16" {
            assert_eq!(half.loss_scale.len(), 20);
            assert!(half.loss_scale.iter().all(|&s| s >= 1.0));
        }
    }

    /// f16 keeps 11 significant bits (2⁻¹¹ ≈ 4.9e-4 relative rounding per value). On lavapipe
    /// the f16 curves stayed within 8e-5 (loss) and 3.9e-4 (gradient norm) of f32 over the 20
    /// steps; 5e-3 is ten times one value's rounding, room for the errors to compound on
    /// other hardware, while a gradient left scaled (×65,536) or an update lost is far beyond.
    const F16_TOL: f64 = 5e-3;
    /// bf16 keeps 8 significant bits, eight times f16's rounding: the same reasoning.
    #[cfg(feature = "cuda")]
    const BF16_TOL: f64 = 4e-2;

    #[cfg(feature = "wgpu")]
    #[test]
    fn f16_run_follows_the_f32_curves_wgpu() {
        follows_f32::<Autodiff<burn::backend::Wgpu>>("f16", F16_TOL);
    }

    /// `bench train` in f16 on wgpu: the step it times is training's (half copy, scaled loss,
    /// overflow check) runs there.
    #[cfg(feature = "wgpu")]
    #[test]
    fn f16_bench_steps_on_wgpu() {
        type B = Autodiff<burn::backend::Wgpu>;
        let shape = labbook_models::BenchShape {
            d_model: 16,
            seq_len: 16,
            batch: 2,
            steps: 3,
            precision: labbook_models::precision::Precision::F16,
            ..labbook_models::BenchShape::new("hybrid")
        };
        let r = labbook_models::bench::bench_train_with::<B>(&shape, &Default::default(), "wgpu")
            .unwrap();
        assert_eq!(r.precision, labbook_models::precision::Precision::F16);
        assert!(r.ms_per_step > 0.0 && r.tokens_per_s.is_finite(), "{r:?}");
    }

    /// On CUDA (`scripts/cuda-check.sh`).
    #[cfg(feature = "cuda")]
    #[test]
    fn bf16_run_follows_the_f32_curves_cuda() {
        follows_f32::<Autodiff<burn::backend::Cuda>>("bf16", BF16_TOL);
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn f16_run_follows_the_f32_curves_cuda() {
        follows_f32::<Autodiff<burn::backend::Cuda>>("f16", F16_TOL);
    }
}
