//! labbook: a terminal-first lab notebook and experiment tracker.
//!
//! This library does no terminal I/O; the `labbook` binary (`src/main.rs`, `src/cli/`)
//! is a thin layer over it.
pub mod bench;
pub mod bibtex;
pub mod compare;
pub mod config;
pub mod editview;
pub mod error;
pub mod example;
pub mod export;
pub mod git;
pub mod github;
pub mod lifecycle;
pub mod model;
pub mod overview;
pub mod plot;
pub mod recorder;
pub mod remote;
pub mod report;
pub mod sanitize;
pub mod store;

pub use error::{Error, Result};
pub use store::Store;
