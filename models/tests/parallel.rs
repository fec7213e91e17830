//! `[train] devices` and `grad_accum`: the same global batch split over two CPU replicas
//! (gradients summed with burn-collective's all-reduce), or over two accumulation
//! micro-steps, follows the single-device loss curve.
use std::sync::atomic::AtomicBool;

use labbook_models::{RunConfig, TrainObserver, TrainOptions, train};

mod common;
use common::{TINY_HYBRID_RUN as BASE, max_rel_diff};

/// Each step's loss and gradient norm (Adam's update hardly changes when every gradient is
/// scaled alike, so the norm is what shows a gradient summed or weighted wrongly).
#[derive(Default)]
struct Losses(Vec<f64>);

impl TrainObserver for Losses {
    fn on_step(&mut self, _step: u64, _total: u64, metrics: &[(String, f64)]) {
        for key in ["loss", "grad_norm"] {
            self.0
                .push(metrics.iter().find(|(k, _)| k == key).expect(key).1);
        }
    }
    fn on_eval(&mut self, _step: u64, _metrics: &[(String, f64)]) {}
}

fn losses(extra: &str) -> Vec<f64> {
    let cfg = RunConfig::parse(&format!("{BASE}{extra}"), "parallel.toml").unwrap();
    let cancel = AtomicBool::new(false);
    let opts = TrainOptions {
        checkpoint_dir: None,
        cancel: &cancel,
        resume_from: None,
    };
    let mut obs = Losses::default();
    train(&cfg, opts, &mut obs).unwrap_or_else(|e| panic!("{extra}: {e}"));
    assert_eq!(obs.0.len(), 40, "{extra}");
    obs.0
}

#[test]
fn two_cpu_devices_and_grad_accum_follow_the_single_device_curve() {
    let one = losses("batch_size = 8\n");
    // The curve must move, or matching it would prove nothing.
    assert!(one[38] < one[0] - 0.05, "loss did not fall: {one:?}");
    let two_devices = losses("batch_size = 8\ndevices = [\"cpu\", \"cpu\"]\n");
    let e = max_rel_diff(&two_devices, &one);
    assert!(
        e < 1e-3,
        "two devices: rel diff {e}\n{two_devices:?}\n{one:?}"
    );
    let accum = losses("batch_size = 4\ngrad_accum = 2\n");
    let e = max_rel_diff(&accum, &one);
    assert!(e < 1e-3, "grad_accum 2: rel diff {e}\n{accum:?}\n{one:?}");
    let both = losses("batch_size = 4\ngrad_accum = 2\ndevices = [\"cpu\", \"cpu\"]\n");
    let e = max_rel_diff(&both, &one);
    assert!(e < 1e-3, "both: rel diff {e}\n{both:?}\n{one:?}");
    // A different global batch does not follow it: the comparison can tell.
    let half = losses("batch_size = 4\n");
    assert!(max_rel_diff(&half, &one) > 1e-3, "batch 4 matched batch 8");
}

#[test]
fn device_settings_that_cannot_work_are_refused_by_key() {
    for (extra, key, says) in [
        (
            "batch_size = 6\ndevices = [\"cpu\", \"cpu\", \"cpu\", \"cpu\"]\n",
            "train.batch_size",
            "4 devices",
        ),
        (
            "batch_size = 8\ndevices = [\"cpu\", \"cuda:1\"]\n",
            "train.devices",
            "mixes",
        ),
        (
            "batch_size = 8\ndevices = [\"cuda:0\", \"cuda:0\"]\n",
            "train.devices",
            "twice",
        ),
        (
            "batch_size = 8\ngrad_accum = 0\n",
            "train.grad_accum",
            "at least 1",
        ),
        ("batch_size = 8\ndevices = [\"gpu0\"]\n", "gpu0", "cuda:N"),
    ] {
        let err = RunConfig::parse(&format!("{BASE}{extra}"), "parallel.toml")
            .and_then(|c| c.validate().map(|_| c))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(says), "{extra}: {err}");
    }
}

/// On CUDA (`scripts/cuda-check.sh`): data parallel over the GPUs the script found
/// (`LABBOOK_GPUS`, 2 when the machine has them; else the 1-GPU path with `grad_accum`)
/// follows one GPU's curve. GPU reductions are not bit-reproducible: 1e-3 relative.
#[cfg(feature = "cuda")]
#[test]
fn data_parallel_on_cuda_follows_one_gpu() {
    let gpus: usize = std::env::var("LABBOOK_GPUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let one = losses("batch_size = 8\nbackend = \"cuda\"\n");
    let split = if gpus >= 2 {
        "batch_size = 8\nbackend = \"cuda\"\ndevices = [\"cuda:0\", \"cuda:1\"]\n"
    } else {
        "batch_size = 4\ngrad_accum = 2\nbackend = \"cuda\"\n"
    };
    let other = losses(split);
    let e = max_rel_diff(&other, &one);
    println!("data parallel on CUDA ({gpus} GPU(s)): max rel diff {e:.2e} over 20 steps");
    assert!(e < 1e-3, "{split}: rel diff {e}\n{other:?}\n{one:?}");
}
