//! Running a training step on a thread of a rayon pool of the run's own.
//!
//! A step is dozens of short parallel regions (each host op splits its rows across a pool).
//! Started from a thread outside the pool, every region is injected into the pool and the
//! caller sleeps on a lock until it is done: two thread wake-ups per region. Started from one
//! of the pool's threads, a region's first share runs on that thread while the others steal
//! the rest, and it waits by spinning and stealing. At d_model 64 that is 5–12% of a step on
//! 2 cores (docs/performance.md, "Fused attention", round 3).
//!
//! The pool is the run's own, not rayon's global one: a thread waiting inside a parallel region
//! runs whatever job it can steal from its pool, and in the global pool that could be another
//! run's (or test's) whole step, beneath its own frames. That step then waits for burn's
//! autodiff lock, which the frames below it hold: a deadlock (seen in the test binaries, where
//! tests train side by side). In a pool of its own a step only ever steals its own pieces.
use rayon::{ThreadPool, ThreadPoolBuilder};

/// A rayon pool that runs one training run's steps (as many threads as the global pool).
pub struct StepPool(Option<ThreadPool>);

impl StepPool {
    /// A pool sized like the global one; if the threads cannot be started, steps run on the
    /// calling thread, as they would without it.
    pub fn new() -> Self {
        let pool = ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("labbook-step-{i}"))
            .build();
        StepPool(pool.ok())
    }

    /// No threads: steps run on the calling thread.
    pub fn inline() -> Self {
        StepPool(None)
    }

    /// Runs `f` on one of the pool's threads; the calling thread waits.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }
}

impl Default for StepPool {
    fn default() -> Self {
        Self::new()
    }
}
