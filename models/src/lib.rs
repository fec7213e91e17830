//! labbook's training engine: Mamba (S6), Transformer and hybrid language models in Burn,
//! generated synthetic tasks, a run-config format and a training loop with no terminal I/O.
//!
//! The app calls [`config::RunConfig::parse`] / [`config::RunConfig::set`], then
//! [`train::train`] with a [`train::TrainObserver`], or [`bench::bench_train`].
pub mod alloc;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod attention_cubecl;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod export;
pub mod fused;
pub mod generate;
pub mod math;
pub mod model;
pub mod optim;
mod parallel;
pub mod precision;
pub mod prefetch;
#[cfg(any(test, feature = "cuda", feature = "wgpu"))]
mod scan_cubecl;
pub mod tasks;
pub mod train;

pub use backend::{BackendChoice, BackendError};
pub use bench::{BenchResult, BenchShape, bench_train};
pub use config::{ConfigError, RunConfig};
#[doc(hidden)]
pub use parallel::fail_replica_at;
pub use train::{NoopObserver, TrainError, TrainObserver, TrainOptions, TrainSummary, train};
