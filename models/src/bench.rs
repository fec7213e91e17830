//! `bench train`: the median time of a training step (forward, backward, AdamW) for one
//! model shape, on generated sequences or on batches drawn from a data file by the data
//! thread, as a run draws them.
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;

use crate::backend::BackendChoice;
use crate::fused::{ScanBackend, StepPool};
use crate::model::{Lm, LmConfig, Positional, pattern_attn_every};
use crate::optim::{AdamWParams, HostAdamW, decay_selected};
use crate::parallel::GraphsHeld;
use crate::precision::{LossScale, Precision, grads_to_master, working_copy};
use crate::prefetch::{BatchSpec, Prefetcher};
use crate::tasks::Task;
use crate::train::{CpuTrainBackend, TrainError, check_precision, clip_grad_norm, scalar, tensors};

/// Attention heads of a bench model: 4 up to d_model 256 (heads of 16 to 64), then heads of
/// at most 64 (12 of 64 at d_model 768, as GPT-2 small); always an even head size, and 1
/// head where none divides. `scripts/mambapy_bench.py` uses the same rule.
pub fn bench_heads(d_model: usize) -> usize {
    // The fewest heads, from 4 and from heads of at most 64, that divide into even sizes.
    (4.max(d_model.div_ceil(64))..=d_model / 2)
        .find(|&h| d_model.is_multiple_of(h) && (d_model / h).is_multiple_of(2))
        .unwrap_or(1)
}

/// Throughput of forward + backward + AdamW for one model shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchResult {
    /// `mamba`, `transformer` or `hybrid`.
    pub model: String,
    /// Layer pattern used.
    pub pattern: String,
    /// Backend name (e.g. `cpu (flex)`).
    pub backend: String,
    /// Compute precision (`f32`, or `bf16` / `f16` with f32 master weights).
    pub precision: Precision,
    /// Width.
    pub d_model: usize,
    /// Layers.
    pub layers: usize,
    /// Sequence length.
    pub seq_len: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Timed steps (after warm-up).
    pub steps: usize,
    /// Warm-up steps (not timed).
    pub warmup_steps: usize,
    /// Median milliseconds per step.
    pub ms_per_step: f64,
    /// Fastest step in milliseconds.
    pub ms_per_step_min: f64,
    /// batch · seq_len / median step time.
    pub tokens_per_s: f64,
    /// Trainable parameters.
    pub n_params: usize,
    /// Share of the timed steps' time spent waiting for the data thread's batches.
    pub data_wait_share: f64,
    /// f16 steps whose gradients overflowed (skipped, as in training, and left out of the
    /// median); 0 otherwise.
    pub skipped_steps: usize,
}

/// What [`bench_train`] measures: a model kind at a size, for a number of timed steps.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchShape {
    /// `mamba`, `transformer` (rope) or `hybrid` (attention every 2nd layer).
    pub model: String,
    pub d_model: usize,
    pub layers: usize,
    pub seq_len: usize,
    pub batch: usize,
    /// Timed steps, after 2 warm-up steps.
    pub steps: usize,
    /// Batches from these files (a `text` or `tokens` `[task]`) instead of generated
    /// induction-heads sequences; the vocabulary is the data's.
    pub data: Option<crate::tasks::TaskSection>,
    /// `[train] precision` of the step (half types on CUDA only).
    pub precision: Precision,
}

impl BenchShape {
    /// `model` at the reference size: d_model 64, 2 layers, seq_len 256, batch 8,
    /// 20 timed steps.
    pub fn new(model: &str) -> Self {
        BenchShape {
            model: model.to_string(),
            d_model: 64,
            layers: 2,
            seq_len: 256,
            batch: 8,
            steps: 20,
            data: None,
            precision: Precision::F32,
        }
    }
}

/// Benchmarks training steps (median over `shape.steps` after 2 warm-up steps) on `backend`.
pub fn bench_train(shape: &BenchShape, backend: BackendChoice) -> Result<BenchResult, TrainError> {
    backend.check_available()?;
    match backend {
        BackendChoice::Cpu => bench_train_with::<CpuTrainBackend>(
            shape,
            &Default::default(),
            &format!("cpu ({})", crate::backend::CPU_BACKEND_NAME),
        ),
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda(index) => {
            bench_train_with::<burn::backend::Autodiff<burn::backend::Cuda>>(
                shape,
                &burn::backend::cuda::CudaDevice { index },
                &backend.to_string(),
            )
        }
        #[cfg(not(feature = "cuda"))]
        other @ BackendChoice::Cuda(_) => {
            Err(crate::backend::BackendError::CudaNotCompiled(other.to_string()).into())
        }
    }
}

/// [`bench_train`] on an explicit backend (used to compare CPU backends).
pub fn bench_train_with<B>(
    shape: &BenchShape,
    device: &B::Device,
    backend_name: &str,
) -> Result<BenchResult, TrainError>
where
    B: AutodiffBackend + ScanBackend,
    B::InnerBackend: ScanBackend,
{
    let &BenchShape {
        ref model,
        d_model,
        layers,
        seq_len,
        batch,
        steps,
        ref data,
        precision,
    } = shape;
    let bad = |m: String| Err(TrainError::InvalidArgument(m));
    if d_model == 0 || layers == 0 || seq_len < 2 || batch == 0 || steps == 0 {
        return bad("bench: d_model, layers, batch and steps must be ≥ 1 and seq_len ≥ 2".into());
    }
    check_precision::<B>(precision, device)?;
    crate::alloc::keep_freed_memory();
    let (pattern, positional) = match model.as_str() {
        "mamba" => ("M".repeat(layers), Positional::None),
        "transformer" => ("A".repeat(layers), Positional::Rope),
        "hybrid" => (pattern_attn_every(layers, 2), Positional::Rope),
        other => {
            return bad(format!(
                "bench: unknown model `{other}` (expected mamba, transformer or hybrid)"
            ));
        }
    };
    let n_heads = bench_heads(d_model);
    let (task, vocab) = match data {
        Some(section) => {
            let task = Task::open(section, &[seq_len])?;
            let vocab = task.vocab_size(section.vocab_size);
            (task, vocab)
        }
        None => (Task::InductionHeads { vocab: 16 }, 16),
    };
    let mut lm: Lm<B> = LmConfig::new(vocab, d_model, pattern.clone())
        .with_n_heads(n_heads)
        .with_positional(positional)
        .init_seeded(0, device);
    let n_params = lm.num_params();
    // As in training: decay for the parameters the reference rule leaves in, then AdamW.
    let defaults = crate::config::TrainSection::defaults_for_bench();
    let mut optim = HostAdamW::init::<B, Lm<B>>(AdamWParams {
        beta_1: defaults.betas[0] as f32,
        beta_2: defaults.betas[1] as f32,
        epsilon: defaults.eps as f32,
        weight_decay: 0.0,
    });
    let warmup = 2;
    let mut times = Vec::with_capacity(steps);
    let mut skipped_steps = 0;
    let spec = BatchSpec {
        seed: 0,
        batch,
        len: seq_len,
        every_position: true, // full LM loss: every position scored
    };
    let mut batches = Prefetcher::start(task, spec, 0, (warmup + steps - 1) as u64);
    let mut waited_timed = Duration::ZERO;
    let pool = StepPool::new();
    // f16 scales its loss as training does, overflow check (a gradient-norm read) included.
    let mut loss_scale = LossScale::new(precision);
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let waited = batches.waited();
        let b = batches.next_batch();
        if i >= warmup {
            waited_timed += batches.waited() - waited;
        }
        // As in training (`parallel::Replicas::step`): the step runs on a thread of the run's
        // own pool, the graph lock taken outside it.
        let _graphs = GraphsHeld::take();
        let mut skipped = false;
        lm = pool.run(|| {
            let (x, y, w) = tensors::<B>(&b, device);
            let scale = loss_scale.factor();
            // As in training: half-precision passes on a copy, f32 gradients for the master.
            let work = working_copy(&lm, precision);
            let (loss, _) = work.loss(x, y, w);
            let loss = if scale == 1.0 {
                loss
            } else {
                loss.mul_scalar(scale)
            };
            let grads = GradientsParams::from_grads(loss.backward(), &work);
            let mut grads = grads_to_master(&lm, grads, precision, scale);
            if precision == Precision::F16 {
                let norm = clip_grad_norm(&lm, &mut grads, 0.0);
                if !loss_scale.update(norm.is_finite()) {
                    skipped = true;
                    return lm;
                }
            }
            let lm = decay_selected(
                lm,
                1.0 - 1e-3 * defaults.weight_decay,
                &defaults.no_weight_decay,
            );
            let lm = optim.step(1e-3, lm, grads);
            // Force the step to finish before stopping the clock.
            let _ = scalar(lm.head.weight.val().sum());
            lm
        });
        // A skipped f16 step (its gradients overflowed) did no optimiser work: not timed.
        if i >= warmup && skipped {
            skipped_steps += 1;
        } else if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    if times.is_empty() {
        return bad(format!(
            "bench: every timed f16 step overflowed ({skipped_steps}); time more steps"
        ));
    }
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        0.5 * (times[times.len() / 2 - 1] + times[times.len() / 2])
    };
    Ok(BenchResult {
        model: model.to_string(),
        pattern,
        backend: backend_name.to_string(),
        precision,
        d_model,
        layers,
        seq_len,
        batch,
        steps,
        warmup_steps: warmup,
        ms_per_step: median,
        ms_per_step_min: times[0],
        tokens_per_s: (batch * seq_len) as f64 / (median / 1e3),
        n_params,
        skipped_steps,
        data_wait_share: waited_timed.as_secs_f64() * 1e3 / times.iter().sum::<f64>().max(1e-9),
    })
}
