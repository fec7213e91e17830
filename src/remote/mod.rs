//! Remote runs through GitHub (`labbook run --remote`, `labbook runner`, and the import
//! half of `labbook sync`). GitHub issues are the queue; there is no server of our own.
//!
//! * [`protocol`]: what goes into issues and comments — the run request, claims (with
//!   leases), the results block with downsampled curves — as hidden JSON blocks.
//! * [`request`]: the requester's side: refuse dirty or unpushed trees, create `R-n` in
//!   `queued-remote`, file the request issue; later import the results into the notebook.
//! * [`runner`]: the GPU machine's side: poll, claim, check out, build, run, report.
//! * [`job_process`]: a job's processes: cleared environment, process group, capped log.
//! * [`pull`]: `pull-model`: a remote run's weights and full curves from its release asset.
//!
//! See `docs/remote-runs.md` for the protocol in prose.
pub mod job_process;
pub mod protocol;
pub mod pull;
pub mod request;
pub mod runner;

pub use request::{RemoteRequest, SyncRemoteReport, request_run, sync_remote_runs};
pub use runner::{RunnerOptions, RunnerReport, SlurmOptions, run_runner};
