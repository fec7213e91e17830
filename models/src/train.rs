//! The training loop: AdamW, linear warm-up then cosine decay, global gradient-norm clipping,
//! periodic evaluation and checkpoints. No terminal I/O: progress goes to a [`TrainObserver`].
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::record::Recorder;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use serde::Serialize;

use crate::backend::{BackendChoice, BackendError, CpuBackend};
use crate::checkpoint::{Rec, ckpt_err, save_checkpoint};
use crate::config::{ConfigError, RunConfig, StateInit, TaskKind};
use crate::data::Tokenizer;
use crate::fused::{BlockState, ScanBackend};
pub use crate::math::masked_loss;
use crate::model::Lm;
use crate::optim::{AdamWParams, HostAdamW};
use crate::parallel::{self, Replicas};
use crate::precision::Precision;
use crate::prefetch::{BatchSpec, Prefetcher};
use crate::tasks::{Batch, Rng, Task};

/// Receives progress from [`train`]. Called on the training thread; keep it cheap.
pub trait TrainObserver {
    /// After every optimiser step: `loss`, `accuracy`, `lr`, `grad_norm`, `tokens_per_s`
    /// (and `bits_per_char` for char-lm).
    fn on_step(&mut self, step: u64, total: u64, metrics: &[(String, f64)]);
    /// After an evaluation: `eval/loss@L`, `eval/acc@L` (and `eval/bits_per_char@L`) per length.
    fn on_eval(&mut self, step: u64, metrics: &[(String, f64)]);
    /// After a checkpoint was written to the directory `path`.
    fn on_checkpoint(&mut self, _step: u64, _path: &Path) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl TrainObserver for NoopObserver {
    fn on_step(&mut self, _: u64, _: u64, _: &[(String, f64)]) {}
    fn on_eval(&mut self, _: u64, _: &[(String, f64)]) {}
}

/// Options that are not part of the run configuration.
#[derive(Debug)]
pub struct TrainOptions<'a> {
    /// Where checkpoints go (`model.mpk`, `optim.mpk`, `state.json`); `None` = no checkpoints.
    pub checkpoint_dir: Option<PathBuf>,
    /// Set to `true` from another thread to stop after the current step.
    pub cancel: &'a AtomicBool,
    /// A checkpoint directory written by an earlier run of the same config to continue from.
    pub resume_from: Option<PathBuf>,
}

/// What a run achieved.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrainSummary {
    /// Optimiser steps completed (including resumed ones).
    pub steps: u64,
    /// Last step metrics followed by the last evaluation metrics.
    pub final_metrics: Vec<(String, f64)>,
    /// Best value of every evaluation metric (max for accuracies, min for losses).
    pub best_metrics: Vec<(String, f64)>,
    /// Wall-clock seconds of this call.
    pub wall_time_s: f64,
    /// True when stopped through `TrainOptions::cancel`.
    pub cancelled: bool,
    /// Trainable parameters.
    pub n_params: usize,
    /// The last checkpoint directory written, if any.
    pub checkpoint: Option<PathBuf>,
    /// Seconds the training thread waited for the data thread's batches.
    pub data_wait_s: f64,
}

/// How often a run without `train.checkpoint_every` writes a checkpoint: ten minutes of
/// training at most are lost to a crash, and a run shorter than that writes none before its
/// last (a checkpoint of a small model costs milliseconds, of a large one seconds).
pub const AUTO_CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The requested backend is not available in this build.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The loss became NaN or infinite.
    #[error(
        "training diverged: loss is {loss} at step {step}; lower `train.lr` or set `train.grad_clip`"
    )]
    NonFinite {
        /// Step at which it happened.
        step: u64,
        /// The offending value.
        loss: f64,
    },
    /// Writing or reading a checkpoint failed.
    #[error("checkpoint `{}`: {message}", path.display())]
    Checkpoint {
        /// File or directory involved.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A benchmark argument is invalid.
    #[error("{0}")]
    InvalidArgument(String),
    /// The data files of a `text` or `tokens` run (the message names the file).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Weights to start from (`train.init_from`) or to export.
    #[error(transparent)]
    Weights(#[from] crate::export::ExportError),
    /// A device ran out of memory (the backend panicked with an out-of-memory error).
    #[error(
        "out of memory on {devices} at batch_size {batch_size} x grad_accum {grad_accum}, seq_len {seq_len}: lower train.batch_size (raise train.grad_accum to keep the step's batch) or add devices; the backend said: {detail}"
    )]
    OutOfMemory {
        /// The run's devices (`cuda:0`, `cuda:0, cuda:1`).
        devices: String,
        batch_size: usize,
        grad_accum: usize,
        seq_len: usize,
        /// The first line of the backend's message.
        detail: String,
    },
}

/// Whether a panic's message is a device's out-of-memory error (CubeCL's launch error, the
/// CUDA driver's `CUDA_ERROR_OUT_OF_MEMORY`, an allocator's "out of memory").
pub fn is_out_of_memory(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("out-of-memory") || m.contains("out of memory") || m.contains("out_of_memory")
}

/// Runs `f`; a panic whose message is an out-of-memory error becomes
/// [`TrainError::OutOfMemory`] naming the run's devices and batch, any other panic goes on.
pub fn oom_guard<T>(
    cfg: &RunConfig,
    f: impl FnOnce() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let text = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            if !is_out_of_memory(&text) {
                std::panic::resume_unwind(payload);
            }
            let devices: Vec<String> = cfg
                .train
                .device_list()
                .iter()
                .map(|d| match d {
                    BackendChoice::Cuda(i) => format!("cuda:{i}"),
                    BackendChoice::Cpu => "cpu".into(),
                })
                .collect();
            Err(TrainError::OutOfMemory {
                devices: devices.join(", "),
                batch_size: cfg.train.batch_size,
                grad_accum: cfg.train.grad_accum,
                seq_len: cfg.task.seq_len,
                detail: text
                    .lines()
                    .map(str::trim)
                    .find(|l| is_out_of_memory(l))
                    .unwrap_or("out of memory")
                    .chars()
                    .take(200)
                    .collect(),
            })
        }
    }
}

/// The CPU training backend.
pub type CpuTrainBackend = burn::backend::Autodiff<CpuBackend>;

/// Trains the configured model on the configured task, dispatching on `train.backend`.
pub fn train(
    cfg: &RunConfig,
    opts: TrainOptions,
    obs: &mut dyn TrainObserver,
) -> Result<TrainSummary, TrainError> {
    cfg.validate()?;
    let devices = cfg.train.device_list();
    for d in &devices {
        d.check_available()?;
    }
    oom_guard(cfg, || dispatch(cfg, opts, obs))
}

/// [`train`] on the backend of `cfg`'s devices.
fn dispatch(
    cfg: &RunConfig,
    opts: TrainOptions,
    obs: &mut dyn TrainObserver,
) -> Result<TrainSummary, TrainError> {
    let devices = cfg.train.device_list();
    match cfg.train.device_kind() {
        BackendChoice::Cpu => {
            let cpus = vec![Default::default(); devices.len()];
            train_on::<CpuTrainBackend>(cfg, opts, obs, &cpus)
        }
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda(_) => {
            let gpus: Vec<_> = devices
                .iter()
                .map(|d| match d {
                    BackendChoice::Cuda(index) => burn::backend::cuda::CudaDevice { index: *index },
                    BackendChoice::Cpu => unreachable!("devices are checked to be of one kind"),
                })
                .collect();
            train_on::<burn::backend::Autodiff<burn::backend::Cuda>>(cfg, opts, obs, &gpus)
        }
        #[cfg(not(feature = "cuda"))]
        other @ BackendChoice::Cuda(_) => {
            Err(BackendError::CudaNotCompiled(other.to_string()).into())
        }
    }
}

/// Learning rate at `step` (1-based): linear warm-up to `lr`, then cosine decay to `lr / 10`.
pub fn lr_at(step: u64, total: u64, warmup: u64, lr: f64) -> f64 {
    if warmup > 0 && step <= warmup {
        return lr * step as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup.min(step)) as f64 / span).clamp(0.0, 1.0);
    let min = lr * 0.1;
    min + 0.5 * (lr - min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

pub(crate) fn tensors<B: Backend>(
    batch: &Batch,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 2>) {
    let shape = [batch.batch, batch.len];
    (
        Tensor::from_data(TensorData::new(batch.inputs.clone(), shape), device),
        Tensor::from_data(TensorData::new(batch.targets.clone(), shape), device),
        Tensor::from_data(TensorData::new(batch.weights.clone(), shape), device),
    )
}

pub(crate) fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

struct GradSquares<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradSquares<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let sq = g.square().sum(); // [1]
            self.total = Some(match self.total.take() {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
}

struct GradScale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradScale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Global L2 norm of all gradients; rescales them to `max_norm` when above it (0 = no clip).
pub(crate) fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let mut sq = GradSquares::<B> { grads, total: None };
    model.visit(&mut sq);
    let norm = sq.total.map(|t| scalar(t).sqrt()).unwrap_or(0.0);
    if max_norm > 0.0 && norm > max_norm && norm.is_finite() {
        model.visit(&mut GradScale {
            grads,
            factor: max_norm / (norm + 1e-6),
        });
    }
    norm
}

fn has_attention(pattern: &str) -> bool {
    pattern.contains('A')
}

/// Sequences per evaluation batch at input length `len` (keeps `[L, L]` attention bounded).
fn eval_batch(len: usize, attention: bool, batch_size: usize) -> usize {
    let cap = if attention {
        (1usize << 23) / (len * len).max(1)
    } else {
        (1usize << 16) / len.max(1)
    };
    cap.clamp(1, batch_size.max(1) * 4)
}

/// Evaluation metrics for every configured length on fixed held-out samples.
fn evaluate<B: ScanBackend>(
    model: &Lm<B>,
    cfg: &RunConfig,
    task: &Task,
    device: &B::Device,
) -> Vec<(String, f64)> {
    let attention = has_attention(&cfg.layer_pattern());
    let mut out = Vec::new();
    for len in cfg.eval_lens() {
        let mut rng = Rng::new(cfg.train.seed, (1 << 40) + len as u64);
        let (mut loss_sum, mut correct, mut count) = (0.0, 0.0, 0.0);
        let mut left = cfg.task.eval_samples;
        let per = eval_batch(task.input_len(len), attention, cfg.train.batch_size);
        while left > 0 {
            let n = per.min(left);
            left -= n;
            let batch = task.sample(&mut rng, n, len, true);
            let weight: f64 = batch.weights.iter().map(|&w| w as f64).sum();
            let (x, y, w) = tensors::<B>(&batch, device);
            let (loss, corr) = model.loss(x, y, w);
            loss_sum += scalar(loss) * weight;
            correct += scalar(corr);
            count += weight;
        }
        let loss = loss_sum / count.max(1.0);
        out.push((format!("eval/loss@{len}"), loss));
        out.push((format!("eval/acc@{len}"), correct / count.max(1.0)));
        match (cfg.task.kind, cfg.task.tokenizer.unwrap_or_default()) {
            (TaskKind::CharLm, _) => out.push((
                format!("eval/bits_per_char@{len}"),
                loss / std::f64::consts::LN_2,
            )),
            // A token is a byte, so nats per token / ln 2 is bits per byte.
            (TaskKind::Text, Tokenizer::Bytes) => {
                out.push((format!("eval/bpb@{len}"), loss / std::f64::consts::LN_2))
            }
            (TaskKind::Text | TaskKind::Tokens, _) => {
                out.push((format!("eval/ppl@{len}"), loss.exp()))
            }
            _ => {}
        }
    }
    out
}

fn update_best(best: &mut Vec<(String, f64)>, metrics: &[(String, f64)]) {
    for (k, v) in metrics {
        let higher = k.contains("acc");
        match best.iter_mut().find(|(bk, _)| bk == k) {
            Some((_, bv)) => {
                if (higher && *v > *bv) || (!higher && *v < *bv) {
                    *bv = *v;
                }
            }
            None => best.push((k.clone(), *v)),
        }
    }
}

/// Trains on an explicit autodiff backend and device: one replica per entry of
/// `[train] devices`, all on `device` (two CPU replicas for `devices = ["cpu", "cpu"]`).
pub fn train_with<B>(
    cfg: &RunConfig,
    opts: TrainOptions,
    obs: &mut dyn TrainObserver,
    device: &B::Device,
) -> Result<TrainSummary, TrainError>
where
    B: AutodiffBackend + ScanBackend,
    B::InnerBackend: ScanBackend,
{
    let devices = vec![device.clone(); cfg.train.device_list().len()];
    train_on::<B>(cfg, opts, obs, &devices)
}

/// Trains with one model replica per device (what [`train`] dispatches to); replica 0, on
/// `devices[0]`, is evaluated and checkpointed.
pub fn train_on<B>(
    cfg: &RunConfig,
    opts: TrainOptions,
    obs: &mut dyn TrainObserver,
    devices: &[B::Device],
) -> Result<TrainSummary, TrainError>
where
    B: AutodiffBackend + ScanBackend,
    B::InnerBackend: ScanBackend,
{
    cfg.validate()?;
    let device = &devices[0];
    crate::alloc::keep_freed_memory();
    let started = Instant::now();
    let t = &cfg.train;
    // The data first: a bad file is refused before any weights exist, and text runs take
    // their vocabulary from it.
    let task = Task::open(&cfg.task, &cfg.eval_lens())?;
    let mut lm = cfg.lm_config();
    lm.vocab_size = task.vocab_size(lm.vocab_size);
    let mut model: Lm<B> = lm.init_seeded(t.seed, device);
    if let Some(path) = t
        .init_from
        .as_deref()
        .filter(|_| opts.resume_from.is_none())
    {
        let path = crate::data::expand_path(path)?;
        model = crate::export::load(model, &cfg.layer_pattern(), &path, device)?;
    }
    let n_params = model.num_params();
    // The decay is applied by `decay_selected` (only to the parameters the rule leaves in),
    // so the optimizer itself runs without it.
    let mut optim = HostAdamW::init::<B, Lm<B>>(AdamWParams {
        beta_1: t.betas[0] as f32,
        beta_2: t.betas[1] as f32,
        epsilon: t.eps as f32,
        weight_decay: 0.0,
    });
    let mut start = 0u64;
    if let Some(dir) = &opts.resume_from {
        let rec = Rec::new();
        model = model
            .load_file(dir.join("model"), &rec, device)
            .map_err(|e| ckpt_err(dir, e))?;
        let orec =
            Recorder::<B>::load(&rec, dir.join("optim"), device).map_err(|e| ckpt_err(dir, e))?;
        optim = optim.load_record(orec);
        let state =
            std::fs::read_to_string(dir.join("state.json")).map_err(|e| ckpt_err(dir, e))?;
        let state: serde_json::Value =
            serde_json::from_str(&state).map_err(|e| ckpt_err(dir, e))?;
        start = state["step"]
            .as_u64()
            .ok_or_else(|| ckpt_err(dir, "state.json has no step"))?;
    }
    let char_lm = cfg.task.kind == TaskKind::CharLm;
    check_precision::<B>(t.precision, device)?;
    if t.state_init != StateInit::Zeros && !model.mamba_blocks().all(|b| b.supports_state()) {
        return Err(ConfigError::key(
            "train.state_init",
            "this backend has no fused CPU block to start the scan from a state",
        )
        .into());
    }
    let mut scan_states = ScanStates::new(cfg, model.mamba_blocks().count());
    let mut last_step: Vec<(String, f64)> = Vec::new();
    let mut last_eval: Vec<(String, f64)> = Vec::new();
    let mut best: Vec<(String, f64)> = Vec::new();
    let mut checkpoint = None;
    let mut cancelled = false;
    let mut step = start;
    let mut last_checkpoint = Instant::now();
    let mut batches = Prefetcher::start(
        task.clone(),
        BatchSpec {
            seed: t.seed,
            batch: t.batch_size * t.grad_accum,
            len: cfg.task.seq_len,
            every_position: false,
        },
        start + 1,
        t.steps.max(start + 1),
    );
    if devices.len() > 1 {
        // Parameters are drawn lazily, on first use: a forward draws them in the order one
        // device's first step would, before the replicas copy them.
        let one = Batch {
            batch: 1,
            len: 1,
            inputs: vec![0],
            targets: vec![0],
            weights: vec![1.0],
        };
        let (x, y, w) = tensors::<B>(&one, device);
        drop(model.loss_from(x, y, w, &[]));
    }
    let _exclusive = (devices.len() > 1).then(parallel::exclusive);
    let outcome = std::thread::scope(|scope| -> Result<Lm<B>, TrainError> {
        // Moved in and handed back, so each step can take the model by value.
        let mut model = model;
        let replicas = Replicas::start(scope, &model, &optim, devices, cfg);
        while step < t.steps {
            if opts.cancel.load(Ordering::Relaxed) {
                cancelled = true;
                break;
            }
            step += 1;
            let t0 = Instant::now();
            let batch = batches.next_batch();
            let states = scan_states.for_step(step);
            let lr = lr_at(step, t.steps, t.warmup_steps, t.lr);
            let (next, loss_v, correct, grad_norm) =
                replicas.step(model, &mut optim, &batch, &states, lr, device);
            model = next;
            scan_states.keep_last(&states);
            if !loss_v.is_finite() {
                return Err(TrainError::NonFinite { step, loss: loss_v });
            }
            let scored = batch.weight();
            let secs = t0.elapsed().as_secs_f64().max(1e-9);
            last_step = vec![
                ("loss".to_string(), loss_v),
                ("accuracy".to_string(), correct / scored.max(1.0)),
                ("lr".to_string(), lr),
                ("grad_norm".to_string(), grad_norm),
                (
                    "tokens_per_s".to_string(),
                    (batch.batch * batch.len) as f64 / secs,
                ),
            ];
            if char_lm {
                last_step.push(("bits_per_char".to_string(), loss_v / std::f64::consts::LN_2));
            }
            if t.precision == Precision::F16 {
                last_step.push(("loss_scale".to_string(), replicas.loss_scale()));
            }
            obs.on_step(step, t.steps, &last_step);
            if (t.eval_every > 0 && step.is_multiple_of(t.eval_every)) || step == t.steps {
                last_eval = evaluate(&model.valid(), cfg, &task, device);
                update_best(&mut best, &last_eval);
                obs.on_eval(step, &last_eval);
            }
            let due = match t.checkpoint_every {
                Some(0) => false,
                Some(n) => step.is_multiple_of(n),
                None => last_checkpoint.elapsed() >= AUTO_CHECKPOINT_EVERY,
            };
            if let Some(dir) = &opts.checkpoint_dir
                && due
                && step != t.steps
            {
                save_checkpoint(dir, &model, &optim, step, cfg, &task)?;
                last_checkpoint = Instant::now();
                checkpoint = Some(dir.clone());
                obs.on_checkpoint(step, dir);
            }
        }
        Ok(model)
    });
    let model = outcome?;
    if let Some(dir) = &opts.checkpoint_dir
        && step > start
    {
        save_checkpoint(dir, &model, &optim, step, cfg, &task)?;
        checkpoint = Some(dir.clone());
        obs.on_checkpoint(step, dir);
    }
    let mut final_metrics = last_step;
    final_metrics.extend(last_eval);
    Ok(TrainSummary {
        steps: step,
        final_metrics,
        best_metrics: best,
        wall_time_s: started.elapsed().as_secs_f64(),
        cancelled,
        n_params,
        checkpoint,
        data_wait_s: batches.waited().as_secs_f64(),
    })
}

/// Refuses a half `precision` on a backend that cannot run it: the fused CPU kernels are
/// f32-only, and a device may report no arithmetic for the type (burn's `supports_dtype`).
pub(crate) fn check_precision<B: ScanBackend>(
    precision: Precision,
    device: &B::Device,
) -> Result<(), TrainError> {
    if !precision.is_half() {
        return Ok(());
    }
    let name = precision.name();
    if B::HOST_KERNELS {
        return Err(ConfigError::key(
            "train.precision",
            format!("\"{name}\" runs on CUDA only (the CPU kernels compute in f32)"),
        )
        .into());
    }
    if !B::supports_dtype(device, precision.dtype().into()) {
        return Err(ConfigError::key(
            "train.precision",
            format!("this device ({device:?}) has no {name} arithmetic; use \"f32\""),
        )
        .into());
    }
    Ok(())
}

/// The Mamba layers' initial states for each training step, as `[train] state_init` asks.
struct ScanStates {
    init: StateInit,
    noise: f64,
    seed: u64,
    /// `batch · d_inner · N`: one layer's state for a whole batch.
    len: usize,
    /// `[batch, d_inner, N]` per batch item: one item's share.
    item: usize,
    /// `carry`: the previous step's final state of each Mamba layer.
    carried: Vec<Option<Arc<Vec<f32>>>>,
}

impl ScanStates {
    fn new(cfg: &RunConfig, mamba_layers: usize) -> Self {
        let (m, t) = (&cfg.model, &cfg.train);
        let item = m.expand * m.d_model * m.d_state;
        ScanStates {
            init: t.state_init,
            noise: t.state_noise,
            seed: t.seed,
            len: t.batch_size * item,
            item,
            carried: vec![None; mamba_layers],
        }
    }

    /// One [`BlockState`] per Mamba layer (none for `zeros`, so the step is the plain one).
    fn for_step(&self, step: u64) -> Vec<BlockState> {
        match self.init {
            StateInit::Zeros => Vec::new(),
            StateInit::Noise => {
                // A stream of its own, so that the data of a step does not depend on this.
                let mut rng = Rng::new(self.seed ^ 0x5EED_57A7_E000_0000, step);
                (0..self.carried.len())
                    .map(|_| BlockState {
                        initial: Some(Arc::new(gaussian(&mut rng, self.len, self.noise))),
                        last: None,
                    })
                    .collect()
            }
            StateInit::Carry => self
                .carried
                .iter()
                .map(|initial| BlockState {
                    initial: initial.clone(),
                    last: Some(Arc::new(Mutex::new(Vec::new()))),
                })
                .collect(),
        }
    }

    /// `carry`: keeps this step's final states, each sequence's handed to the previous
    /// batch slot (so that no slot continues its own sequence's state).
    fn keep_last(&mut self, states: &[BlockState]) {
        for (kept, state) in self.carried.iter_mut().zip(states) {
            let Some(sink) = &state.last else { continue };
            let last = std::mem::take(&mut *sink.lock().expect("state sink"));
            if last.len() != self.len {
                continue;
            }
            let mut rolled = last[self.item..].to_vec();
            rolled.extend_from_slice(&last[..self.item]);
            *kept = Some(Arc::new(rolled));
        }
    }
}

/// `n` draws of a centred Gaussian with standard deviation `std` (Box–Muller).
fn gaussian(rng: &mut Rng, n: usize, std: f64) -> Vec<f32> {
    let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let (u1, u2) = (1.0 - unit(), unit()); // u1 in (0, 1]
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let a = std::f64::consts::TAU * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_out_of_memory_panic_names_the_devices_and_the_batch() {
        let mut cfg = RunConfig::parse(
            "[model]\nkind = \"mamba\"\nd_model = 8\nn_layers = 1\n\
             [task]\nkind = \"induction-heads\"\nvocab_size = 8\nseq_len = 2048\n\
             [train]\nsteps = 1\nbatch_size = 64\nlr = 1e-3\ngrad_accum = 2\n",
            "oom.toml",
        )
        .unwrap();
        cfg.train.devices = vec![BackendChoice::Cuda(0), BackendChoice::Cuda(1)];
        let e = oom_guard(&cfg, || -> Result<(), TrainError> {
            panic!(
                "called `Result::unwrap()`: An out-of-memory error happened during launch\nCaused by:\n  CUDA_ERROR_OUT_OF_MEMORY"
            )
        })
        .unwrap_err()
        .to_string();
        for part in [
            "out of memory on cuda:0, cuda:1",
            "batch_size 64 x grad_accum 2",
            "seq_len 2048",
            "An out-of-memory error happened during launch",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        // Other panics are not turned into errors.
        let other = std::panic::catch_unwind(|| {
            let _ = oom_guard(&cfg, || -> Result<(), TrainError> {
                panic!("index out of bounds")
            });
        });
        assert!(other.is_err());
        assert!(!is_out_of_memory("index out of bounds"));
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((lr_at(1, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((lr_at(10, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!(lr_at(50, 100, 10, 1.0) < 1.0);
        assert!((lr_at(100, 100, 10, 1.0) - 0.1).abs() < 1e-9);
        assert!((lr_at(1, 100, 0, 1.0) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn masked_loss_only_counts_weighted_positions() {
        type B = CpuBackend;
        let device = Default::default();
        // Two positions, vocab 2; only the second is scored and predicted correctly.
        let logits = Tensor::<B, 3>::from_data(
            TensorData::new(vec![5.0f32, 0.0, 0.0, 5.0], [1, 2, 2]),
            &device,
        );
        let targets =
            Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 1], [1, 2]), &device);
        let weights =
            Tensor::<B, 2>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 2]), &device);
        let (loss, correct) = masked_loss(logits, targets, weights);
        let expected = (1.0 + (-5.0f64).exp()).ln();
        assert!((scalar(loss) - expected).abs() < 1e-5);
        assert_eq!(scalar(correct), 1.0);
    }
}
