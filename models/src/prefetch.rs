//! Batches drawn on a worker thread ahead of the step that needs them, so that reading
//! windows out of a memory-mapped file (page faults on a cold file) overlaps the previous
//! step's compute instead of adding to it. The batch for step `s` is what
//! `task.sample(Rng::new(seed, s), …)` gives, so runs are reproducible and a resumed run
//! sees the same batches as one that never stopped.
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::tasks::{Batch, Rng, Task};

/// Batches made ahead of time: two in flight is enough to hide one batch's drawing.
const AHEAD: usize = 2;

/// What each batch is.
#[derive(Debug, Clone, Copy)]
pub struct BatchSpec {
    pub seed: u64,
    pub batch: usize,
    pub len: usize,
    /// Score every position (the bench's full LM loss), whatever the task weights.
    pub every_position: bool,
}

pub struct Prefetcher {
    rx: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
    waited: Duration,
}

impl Prefetcher {
    /// Starts drawing the batches of steps `first..=last`.
    pub fn start(task: Task, spec: BatchSpec, first: u64, last: u64) -> Prefetcher {
        let (tx, rx) = sync_channel(AHEAD);
        let worker = std::thread::Builder::new()
            .name("labbook-data".into())
            .spawn(move || produce(&task, spec, first, last, &tx))
            .expect("spawn the data thread");
        Prefetcher {
            rx: Some(rx),
            worker: Some(worker),
            waited: Duration::ZERO,
        }
    }

    /// The next step's batch (blocks until it is ready; the wait is added to [`Self::waited`]).
    ///
    /// # Panics
    /// Past the last step, or if the data thread panicked.
    pub fn next_batch(&mut self) -> Batch {
        let t0 = Instant::now();
        let batch = self
            .rx
            .as_ref()
            .and_then(|rx| rx.recv().ok())
            .expect("the data thread ended early (see its panic above)");
        self.waited += t0.elapsed();
        batch
    }

    /// Time the training thread spent waiting for batches.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Closing the channel makes a blocked `send` fail, so the worker returns.
        drop(self.rx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn produce(task: &Task, spec: BatchSpec, first: u64, last: u64, tx: &SyncSender<Batch>) {
    for step in first..=last {
        let mut b = task.sample(&mut Rng::new(spec.seed, step), spec.batch, spec.len, false);
        if spec.every_position {
            b.weights.iter_mut().for_each(|w| *w = 1.0);
        }
        if tx.send(b).is_err() {
            return; // training stopped early
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_the_ones_sampled_in_the_training_thread_in_step_order() {
        let task = Task::InductionHeads { vocab: 16 };
        let spec = BatchSpec {
            seed: 9,
            batch: 3,
            len: 12,
            every_position: false,
        };
        let mut p = Prefetcher::start(task.clone(), spec, 5, 9);
        for step in 5..=9 {
            let want = task.sample(&mut Rng::new(9, step), 3, 12, false);
            assert_eq!(p.next_batch(), want, "step {step}");
        }
    }

    #[test]
    fn stopping_early_ends_the_worker() {
        let task = Task::InductionHeads { vocab: 16 };
        let spec = BatchSpec {
            seed: 0,
            batch: 1,
            len: 8,
            every_position: true,
        };
        let mut p = Prefetcher::start(task, spec, 1, 1_000_000);
        let b = p.next_batch();
        assert!(b.weights.iter().all(|&w| w == 1.0));
        // Dropping joins the worker: this returns only if the worker noticed.
        drop(p);
    }
}
