//! The library's error type. Every message names the thing that was wrong
//! (the ID, the file and line, the field) so the CLI can print it as one line.
use std::path::PathBuf;

use crate::model::{ItemId, Kind, RunId};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no item {0} in this notebook")]
    NotFound(ItemId),
    #[error("no run {0} in this notebook")]
    RunNotFound(RunId),
    #[error("`{0}` is not an item ID (expected e.g. T-3, P-1, I-2, E-4 or R-5)")]
    InvalidId(String),
    #[error("unknown kind `{0}` (expected task, paper, idea or experiment)")]
    InvalidKind(String),
    #[error("`{status}` is not {} status (allowed: {allowed})", kind.with_article())]
    InvalidStatus {
        kind: Kind,
        status: String,
        allowed: String,
    },
    #[error("{} has no field `{field}` (fields: {allowed})", kind.with_article())]
    InvalidField {
        kind: Kind,
        field: String,
        allowed: String,
    },
    #[error("invalid value `{value}` for `{field}`: expected {expected}")]
    InvalidValue {
        field: String,
        value: String,
        expected: &'static str,
    },
    #[error("unknown link relation `{rel}` (allowed: {allowed})")]
    InvalidRelation { rel: String, allowed: String },
    #[error("invalid tag `{0}`")]
    InvalidTag(String),
    #[error("a title cannot be empty")]
    EmptyTitle,
    #[error("cannot link {0} to itself")]
    SelfLink(ItemId),
    #[error("{a} and {b} are not linked{}", rel.map(|r| format!(" as {r}")).unwrap_or_default())]
    NoSuchLink {
        a: ItemId,
        b: ItemId,
        rel: Option<&'static str>,
    },
    #[error("{0} is archived; restore it first or use --purge")]
    Archived(ItemId),
    #[error("{path}: not a labbook database ({why})")]
    NotLabbook { path: PathBuf, why: String },
    #[error(
        "{path}: database schema version {found} is newer than this labbook supports ({supported}); upgrade labbook"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{0}: the database is read-only; nothing was changed")]
    ReadOnly(PathBuf),
    #[error("{path}: cannot open database: {why}")]
    CannotOpen { path: PathBuf, why: String },
    #[error("{file}:{line}: {msg}")]
    Parse {
        file: String,
        line: usize,
        msg: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// A GitHub sync failure (never contains the token).
    #[error("GitHub sync: {0}")]
    Github(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
