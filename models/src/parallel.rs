//! One optimiser step split over accumulation micro-steps (`[train] grad_accum`) and model
//! replicas on several devices (`[train] devices`), so that it computes the gradient of the
//! whole step's batch whatever the split.
//!
//! Each part's masked mean loss is weighted by its share of the step's scored positions
//! before its backward, so the parts' gradients add up to the gradient of the whole batch's
//! mean loss. Replicas sum theirs with burn-collective's all-reduce
//! ([`GradientsParams::all_reduce`]) and then each takes the same optimiser step, so they
//! stay identical without sending weights around (data parallel as in PyTorch's DDP).
//! Replica 0 runs on the caller's thread and is the one evaluated and checkpointed.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};

use burn::collective::{
    CollectiveConfig, PeerId, ReduceOperation, finish_collective, register, reset_collective,
};
use burn::module::Module;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::config::{RunConfig, TrainSection};
use crate::fused::{BlockState, ScanBackend, StepPool};
use crate::model::Lm;
use crate::optim::{HostAdamW, decay_selected};
use crate::precision::{LossScale, grads_to_master, working_copy};
use crate::tasks::Batch;
use crate::train::{clip_grad_norm, scalar, tensors};

/// The optimizer every replica holds.
pub(crate) type Optim<B> = OptimizerAdaptor<HostAdamW, Lm<B>, B>;

/// What a replica's share of one step gave: `Σ loss · weight` over its parts, and the
/// number of correct predictions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Share {
    pub loss_sum: f64,
    pub correct: f64,
}

impl Share {
    fn add(self, other: Share) -> Share {
        Share {
            loss_sum: self.loss_sum + other.loss_sum,
            correct: self.correct + other.correct,
        }
    }
}

/// The parts of one step's batch (`batch_size · grad_accum` sequences) for each replica:
/// micro-step `j` takes sequences `[j·batch_size, (j + 1)·batch_size)`, and replica `d` an
/// equal slice of each micro-step's sequences.
pub(crate) fn split(batch: &Batch, grad_accum: usize, replicas: usize) -> Vec<Vec<Batch>> {
    let micro = batch.batch / grad_accum;
    let per = micro / replicas;
    (0..replicas)
        .map(|d| {
            (0..grad_accum)
                .map(|j| batch.rows(j * micro + d * per, per))
                .collect()
        })
        .collect()
}

/// Serialises the replicas' forward and backward passes: with two threads building and
/// running autodiff graphs at once, burn 0.21's process-wide graph registry
/// (`burn-autodiff` `runtime/graph.rs`) now and then lost part of a gradient (seen as
/// run-to-run differences of 0.3% in the gradient norm of a two-replica run with
/// accumulation; none with this lock). The all-reduce and the optimiser step stay
/// concurrent, and on a GPU the queued kernels still overlap.
static GRAPHS: Mutex<()> = Mutex::new(());

/// Proof that this thread holds [`GRAPHS`].
pub(crate) struct GraphsHeld(#[allow(dead_code)] MutexGuard<'static, ()>);

impl GraphsHeld {
    /// Waits for the other threads' forward and backward passes to finish.
    pub(crate) fn take() -> Self {
        GraphsHeld(GRAPHS.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The summed gradients of `parts` on `model`, each part's loss weighted by its share of
/// `total_weight` (the whole step's scored positions, over every replica). A single part that
/// is the whole step is not reweighted, so one device without accumulation computes exactly
/// what it always has. Returns the gradients and each part's loss, correct count and weight,
/// unread (see [`share_of`]). Under `[train] precision` the passes run on a half-precision
/// copy of `model`, the loss multiplied by `loss_scale`, and the gradients come back as
/// `model`'s, in f32 and unscaled.
fn backward_parts<B>(
    model: &Lm<B>,
    share: &StepShare,
    device: &B::Device,
    _graphs: &GraphsHeld,
) -> (GradientsParams, Vec<PartValues<B>>)
where
    B: AutodiffBackend + ScanBackend,
    B::InnerBackend: ScanBackend,
{
    let &StepShare {
        parts,
        total_weight,
        states,
        train,
        loss_scale,
    } = share;
    let whole = parts.len() == 1 && parts[0].weight() == total_weight;
    let mut acc = GradientsAccumulator::<Lm<B>>::new();
    let mut single = None;
    let mut values = Vec::with_capacity(parts.len());
    let work = working_copy(model, train.precision);
    for part in parts {
        let (x, y, w) = tensors::<B>(part, device);
        let (loss, correct) = work.loss_from(x, y, w, states);
        let weight = part.weight();
        values.push((loss.clone().detach(), correct, weight));
        // The part's share of the step, times f16's loss scale: one multiply (none for a
        // lone f32 part, which computes exactly what one device always has).
        let share = if whole {
            1.0
        } else {
            weight / total_weight.max(1.0)
        };
        let factor = share * loss_scale;
        let loss = if factor == 1.0 {
            loss
        } else {
            loss.mul_scalar(factor)
        };
        let grads = GradientsParams::from_grads(loss.backward(), &work);
        let grads = grads_to_master(model, grads, train.precision, loss_scale);
        if parts.len() == 1 {
            single = Some(grads);
        } else {
            acc.accumulate(model, grads);
        }
    }
    (single.unwrap_or_else(|| acc.grads()), values)
}

/// A replica's share of one step, as [`backward_parts`] takes it.
struct StepShare<'a> {
    /// The replica's micro-step parts.
    parts: &'a [Batch],
    /// The whole step's scored positions, over every replica.
    total_weight: f64,
    /// The scans' initial states (empty: zeros).
    states: &'a [BlockState],
    train: &'a TrainSection,
    /// What the loss is multiplied by before the backward (f16; else 1).
    loss_scale: f64,
}

/// One part's loss, correct predictions and scored weight, as tensors not yet read.
type PartValues<B> = (Tensor<B, 1>, Tensor<B, 1>, f64);

/// The parts' summed loss and correct count. Read after [`GRAPHS`] is released where that is
/// possible: on a GPU each read waits for the device.
fn share_of<B: Backend>(values: Vec<PartValues<B>>) -> Share {
    values
        .into_iter()
        .fold(Share::default(), |s, (loss, correct, weight)| {
            s.add(Share {
                loss_sum: scalar(loss) * weight,
                correct: scalar(correct),
            })
        })
}

/// Sums the replicas' gradients (when there are peers), clips them, decays and steps.
/// Returns the model and the gradient norm before clipping, or why the all-reduce failed (a
/// replica died: see [`Failure`]). An f16 step whose gradients overflowed is skipped (see
/// [`LossScale`]).
fn apply<B>(
    model: Lm<B>,
    optim: &mut Optim<B>,
    mut grads: GradientsParams,
    peer: Option<PeerId>,
    lr: f64,
    t: &TrainSection,
    loss_scale: &Mutex<LossScale>,
) -> Result<(Lm<B>, f64), String>
where
    B: AutodiffBackend + ScanBackend,
    B::InnerBackend: ScanBackend,
{
    if let Some(peer) = peer {
        grads = grads
            .all_reduce::<B::InnerBackend>(peer, ReduceOperation::Sum)
            .map_err(|e| format!("all-reduce of the gradients failed: {e:?}"))?;
    }
    let grad_norm = clip_grad_norm(&model, &mut grads, t.grad_clip);
    let take = loss_scale
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .update(grad_norm.is_finite());
    if !take {
        return Ok((model, grad_norm));
    }
    let model = decay_selected(model, 1.0 - lr * t.weight_decay, &t.no_weight_decay);
    Ok((optim.step(lr, model, grads), grad_norm))
}

/// The first failure among a run's replica threads, as `replica N on DEVICE: message`.
///
/// A replica that panics (a GPU out of memory) would leave the others waiting forever for its
/// share of the next all-reduce: it records why here and resets burn-collective, which fails
/// their pending all-reduce, and replica 0 then panics with this message (so an out-of-memory
/// error still reads as one).
#[derive(Clone, Default)]
struct Failure(Arc<Mutex<Option<String>>>);

impl Failure {
    /// Keeps the first failure only.
    fn record(&self, what: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(what);
    }

    /// Panics with the recorded failure, else with `fallback`.
    fn raise(&self, fallback: &str) -> ! {
        let recorded = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        panic!("{}", recorded.unwrap_or_else(|| fallback.to_string()))
    }
}

/// A panic's message.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Tests only: `(replica << 32) | step`; that replica panics with an out-of-memory message at
/// that step (1 = the first) of the next multi-device run. 0, the default, never.
static FAIL_REPLICA: AtomicU64 = AtomicU64::new(0);

/// Tests only: makes replica `index` of the next multi-device run panic, as a GPU out of
/// memory would, at its `step`-th step (from 1).
#[doc(hidden)]
pub fn fail_replica_at(index: usize, step: u64) {
    FAIL_REPLICA.store(((index as u64) << 32) | step, Ordering::Relaxed);
}

/// The test failure of [`fail_replica_at`], when it is this replica's and step's (it fires once).
fn injected_failure(index: usize, step: u64) {
    let want = ((index as u64) << 32) | step;
    if step > 0
        && FAIL_REPLICA
            .compare_exchange(want, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        if index == 0 {
            // Replica 0 fails after its backward: let the others reach the all-reduce first,
            // the case a reset must end.
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("test: CUDA_ERROR_OUT_OF_MEMORY: out of memory on replica {index}");
    }
}

/// One step's work for a replica thread.
struct Job {
    parts: Vec<Batch>,
    total_weight: f64,
    lr: f64,
}

/// Only one multi-device run at a time per process: burn-collective's local server is
/// process-wide.
static COLLECTIVE: Mutex<()> = Mutex::new(());

/// Held for the whole of a multi-device run, replica threads included.
pub(crate) fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The replicas of a run: replica 0 is the caller's model; the others run on their own
/// threads (spawned into `scope`) and are driven through channels.
pub(crate) struct Replicas {
    jobs: Vec<Sender<Job>>,
    /// Each other replica's share of a step; `None` when it failed (see [`Failure`]).
    shares: Receiver<Option<Share>>,
    /// Unregisters replica 0 (when there are peers).
    finish: Option<Box<dyn FnOnce()>>,
    /// Fails a pending all-reduce (when there are peers): see [`Drop`].
    reset: Option<Box<dyn Fn()>>,
    train: TrainSection,
    /// Runs a lone replica's steps (not used with peers).
    pool: StepPool,
    /// Replica 0's f16 loss scale (each replica keeps its own; they stay equal).
    loss_scale: Mutex<LossScale>,
    /// Why a replica thread stopped, if one did.
    failure: Failure,
    /// Steps taken (for [`fail_replica_at`]).
    taken: AtomicU64,
}

impl Replicas {
    /// Starts replicas `1..devices.len()` as copies of `model` (forked to their device, with
    /// a copy of `optim`'s state) and registers every replica with burn-collective. With one
    /// device nothing is started. The caller holds [`exclusive`] when there are several.
    pub(crate) fn start<'scope, 'env, B>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        model: &Lm<B>,
        optim: &Optim<B>,
        devices: &[B::Device],
        cfg: &'env RunConfig,
    ) -> Self
    where
        B: AutodiffBackend + ScanBackend,
        B::InnerBackend: ScanBackend,
    {
        let (share_tx, shares) = channel();
        if devices.len() < 2 {
            return Replicas {
                jobs: Vec::new(),
                shares,
                finish: None,
                reset: None,
                train: cfg.train.clone(),
                pool: StepPool::new(),
                loss_scale: Mutex::new(LossScale::new(cfg.train.precision)),
                failure: Failure::default(),
                taken: AtomicU64::new(0),
            };
        }
        reset_collective::<B::InnerBackend>();
        let config = CollectiveConfig::default().with_num_devices(devices.len());
        let mut jobs = Vec::new();
        let failure = Failure::default();
        for (i, device) in devices.iter().enumerate().skip(1) {
            let (tx, rx) = channel::<Job>();
            jobs.push(tx);
            let replica = model.clone().fork(device);
            let optim = optim.clone();
            let (device, config, share_tx) = (device.clone(), config.clone(), share_tx.clone());
            let failure = failure.clone();
            scope.spawn(move || {
                let channels = (rx, share_tx);
                replica_loop(i, replica, optim, device, config, cfg, channels, failure)
            });
        }
        register::<B::InnerBackend>(PeerId::from(0), devices[0].clone(), config)
            .unwrap_or_else(|e| panic!("burn-collective registration failed: {e:?}"));
        Replicas {
            jobs,
            shares,
            reset: Some(Box::new(reset_collective::<B::InnerBackend>)),
            finish: Some(Box::new(|| {
                let _ = finish_collective::<B::InnerBackend>(PeerId::from(0));
            })),
            train: cfg.train.clone(),
            pool: StepPool::inline(),
            loss_scale: Mutex::new(LossScale::new(cfg.train.precision)),
            failure,
            taken: AtomicU64::new(0),
        }
    }

    /// One optimiser step of every replica on `batch`; returns replica 0's model, the
    /// step's mean loss, correct predictions and gradient norm.
    pub(crate) fn step<B>(
        &self,
        model: Lm<B>,
        optim: &mut Optim<B>,
        batch: &Batch,
        states: &[BlockState],
        lr: f64,
        device: &B::Device,
    ) -> (Lm<B>, f64, f64, f64)
    where
        B: AutodiffBackend + ScanBackend,
        B::InnerBackend: ScanBackend,
    {
        let total_weight = batch.weight();
        let mut parts = split(batch, self.train.grad_accum, self.jobs.len() + 1).into_iter();
        let mine = parts.next().expect("replica 0's parts");
        for (job, parts) in self.jobs.iter().zip(parts) {
            job.send(Job {
                parts,
                total_weight,
                lr,
            })
            .unwrap_or_else(|_| self.failure.raise("a replica thread stopped"));
        }
        let peer = (!self.jobs.is_empty()).then(|| PeerId::from(0));
        let train = &self.train;
        let (loss_scale, failure) = (&self.loss_scale, &self.failure);
        let step_share = StepShare {
            parts: &mine,
            total_weight,
            states,
            train,
            loss_scale: self.loss_scale(),
        };
        let (model, grad_norm, mut share) = match peer {
            // Alone, the step runs on a thread of the run's own pool (fewer wake-ups per
            // parallel region; see `StepPool`).
            None => {
                let graphs = GraphsHeld::take();
                self.pool.run(|| {
                    let (grads, values) = backward_parts(&model, &step_share, device, &graphs);
                    let (model, grad_norm) =
                        apply(model, optim, grads, peer, lr, train, loss_scale)
                            .unwrap_or_else(|e| failure.raise(&e));
                    (model, grad_norm, share_of(values))
                })
            }
            // Not with replicas: a pool thread blocked in the all-reduce could leave a
            // one-thread pool with no thread for the other replicas' work.
            Some(_) => {
                let (grads, values) = {
                    let graphs = GraphsHeld::take();
                    backward_parts(&model, &step_share, device, &graphs)
                };
                // After its backward, when the others may already wait in the all-reduce.
                injected_failure(0, self.taken.fetch_add(1, Ordering::Relaxed) + 1);
                let share = share_of(values);
                let (model, grad_norm) = apply(model, optim, grads, peer, lr, train, loss_scale)
                    .unwrap_or_else(|e| self.failure.raise(&e));
                (model, grad_norm, share)
            }
        };
        for _ in &self.jobs {
            match self.shares.recv() {
                Ok(Some(theirs)) => share = share.add(theirs),
                Ok(None) | Err(_) => self.failure.raise("a replica thread stopped"),
            }
        }
        let loss = share.loss_sum / total_weight.max(1.0);
        (model, loss, share.correct, grad_norm)
    }

    /// The f16 loss scale the next step will use (1 for f32 and bf16).
    pub(crate) fn loss_scale(&self) -> f64 {
        let scale = self.loss_scale.lock().unwrap_or_else(|e| e.into_inner());
        scale.factor()
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        // Replica 0 is unwinding (its GPU ran out of memory): the others may already wait in
        // the all-reduce for its share, which unregistering it would not end. Resetting fails
        // that all-reduce; they record it and stop, and the scope can join them.
        if std::thread::panicking()
            && let Some(reset) = &self.reset
        {
            reset();
        }
        // Closing the channels ends the replica threads, which unregister themselves.
        self.jobs.clear();
        if let Some(finish) = self.finish.take() {
            finish();
        }
    }
}

/// A replica thread: takes steps until its channel closes, or until one fails (then it
/// records why in `failure` and fails the others' all-reduce).
#[allow(clippy::too_many_arguments)]
fn replica_loop<B>(
    index: usize,
    mut model: Lm<B>,
    mut optim: Optim<B>,
    device: B::Device,
    config: CollectiveConfig,
    cfg: &RunConfig,
    (jobs, shares): (Receiver<Job>, Sender<Option<Share>>),
    failure: Failure,
) where
    B: AutodiffBackend + ScanBackend,
    B::InnerBackend: ScanBackend,
{
    let peer = PeerId::from(index);
    register::<B::InnerBackend>(peer, device.clone(), config)
        .unwrap_or_else(|e| panic!("burn-collective registration failed: {e:?}"));
    let loss_scale = Mutex::new(LossScale::new(cfg.train.precision));
    let mut taken = 0u64;
    while let Ok(job) = jobs.recv() {
        taken += 1;
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            injected_failure(index, taken);
            let step_share = StepShare {
                parts: &job.parts,
                total_weight: job.total_weight,
                states: &[],
                train: &cfg.train,
                loss_scale: loss_scale
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .factor(),
            };
            let (grads, values) = {
                let graphs = GraphsHeld::take();
                backward_parts(&model, &step_share, &device, &graphs)
            };
            let share = share_of(values);
            let t = &cfg.train;
            apply(model, &mut optim, grads, Some(peer), job.lr, t, &loss_scale)
                .map(|(model, _)| (model, share))
        }));
        let failed = match step {
            Ok(Ok((next, share))) => {
                model = next;
                if shares.send(Some(share)).is_err() {
                    break;
                }
                continue;
            }
            Ok(Err(all_reduce)) => all_reduce,
            Err(payload) => panic_text(&*payload),
        };
        failure.record(format!("replica {index} on {device:?}: {failed}"));
        reset_collective::<B::InnerBackend>();
        // Replica 0 may be waiting for this step's share rather than in the all-reduce.
        let _ = shares.send(None);
        return;
    }
    let _ = finish_collective::<B::InnerBackend>(peer);
}
