//! Two-way GitHub issue sync (`labbook sync`). See `docs/github.md` for the user's view
//! and `docs/architecture.md` for where each part lives.
pub mod client;
pub(crate) mod issue;
pub mod merge;
pub mod render;
pub mod state;
pub mod summary;
pub mod sync;
pub mod token;

pub use merge::Field;
pub use state::{Conflict, ItemSync, Resolution, SyncStatus, SyncSummary};
pub use summary::{post_run_summary, run_summary_markdown};
pub use sync::{SyncOptions, SyncReport, sync, sync_with};
pub use token::Token;
