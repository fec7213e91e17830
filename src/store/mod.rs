//! The notebook's SQLite store: opening and migrating `tracker.db`, and one
//! transaction per user-level operation. Submodules add the operations.
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use rusqlite_migration::{M, Migrations};

use crate::error::{Error, Result};

pub mod github;
pub(crate) mod items;
mod links;
mod metrics;
mod runs;
mod search;

pub use items::ListFilter;
pub use items::insert_item;
pub use links::insert_link;
pub use metrics::{latest_values_in, metric_keys_in, metric_points_in};
pub use runs::{
    LatestRun, MetricPoint, NewRun, RemoteOutcome, Run, RunEnvironment, RunFilter, RunStatus,
    STALE_HEARTBEAT, latest_run_in, pid_alive,
};
pub use search::{SearchHit, as_you_type};

/// `PRAGMA application_id` of labbook databases ("LBK1"), so a foreign SQLite file is refused.
const APPLICATION_ID: i64 = 0x4c42_4b31;

/// The schema, one migration per version (`PRAGMA user_version` counts them).
const MIGRATIONS: [&str; 4] = [
    include_str!("schema.sql"),
    include_str!("sync.sql"),
    include_str!("metric_chunks.sql"),
    include_str!("run_environment.sql"),
];

fn migrations() -> Migrations<'static> {
    Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect())
}

/// Number of schema versions this binary knows.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An open notebook. All writes go through [`Store::write`], one transaction per operation.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    author: String,
}

impl Store {
    /// Opens (creating and migrating if needed) the notebook at `path`.
    ///
    /// A file whose permission bits forbid writing is opened read-only, even for root,
    /// so "read-only notebook" means the same thing everywhere.
    pub fn open(path: &Path, author: impl Into<String>) -> Result<Store> {
        let exists = path.exists();
        if exists {
            check_sqlite_header(path)?;
        } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(Error::CannotOpen {
                path: path.to_path_buf(),
                why: format!("directory {} does not exist", dir.display()),
            });
        }
        let read_only = exists
            && std::fs::metadata(path)
                .map(|m| m.permissions().readonly())
                .unwrap_or(false);
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let cannot_open = |e: rusqlite::Error| Error::CannotOpen {
            path: path.to_path_buf(),
            why: e.to_string(),
        };
        let mut conn = Connection::open_with_flags(path, flags).map_err(cannot_open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(cannot_open)?;
        let not_labbook = |why: String| Error::NotLabbook {
            path: path.to_path_buf(),
            why,
        };
        let app_id: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| not_labbook(e.to_string()))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
            return Err(not_labbook(
                "it is an SQLite file made by another program".into(),
            ));
        }
        if version > schema_version() {
            return Err(Error::SchemaTooNew {
                path: path.to_path_buf(),
                found: version,
                supported: schema_version(),
            });
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        // Search reads many pages of the full-text index: map them instead of a read() and a
        // copy per page (measured: about a quarter less CPU per query; a larger page cache
        // was slower).
        conn.pragma_update(None, "mmap_size", 256i64 << 20)?;
        if !read_only {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| map_write_error(e, path))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            if version < schema_version() {
                migrations().to_latest(&mut conn).map_err(|e| match e {
                    rusqlite_migration::Error::RusqliteError { err, .. } => {
                        map_write_error(err, path)
                    }
                    other => {
                        Error::Invalid(format!("{}: migration failed: {other}", path.display()))
                    }
                })?;
                conn.pragma_update(None, "application_id", APPLICATION_ID)?;
            }
        } else if version < schema_version() {
            return Err(Error::ReadOnly(path.to_path_buf()));
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            author: author.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn author(&self) -> &str {
        &self.author
    }

    /// Read access for queries that need no transaction.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in one IMMEDIATE transaction: all of it lands or none of it does.
    /// IMMEDIATE takes the write lock up front, so concurrent writers wait
    /// (busy timeout) instead of failing mid-way with `database is locked`.
    pub fn write<T>(&mut self, f: impl FnOnce(&Transaction, &Ctx) -> Result<T>) -> Result<T> {
        let ctx = Ctx {
            author: self.author.clone(),
            now: now(),
        };
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| map_write_error(e, &path))?;
        let out = f(&tx, &ctx).map_err(|e| match e {
            Error::Sqlite(e) => map_write_error(e, &path),
            other => other,
        })?;
        tx.commit().map_err(|e| map_write_error(e, &path))?;
        Ok(out)
    }

    /// Copies the whole notebook to `dest` with SQLite's online backup (safe while others write).
    pub fn backup(&self, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(Error::Invalid(format!(
                "{}: already exists; choose a new file",
                dest.display()
            )));
        }
        self.conn
            .backup(rusqlite::MAIN_DB, dest, None)
            .map_err(|e| Error::CannotOpen {
                path: dest.to_path_buf(),
                why: e.to_string(),
            })
    }

    /// `PRAGMA integrity_check` result ("ok" when healthy).
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

/// Who and when, for the rows a transaction writes.
pub struct Ctx {
    pub author: String,
    pub now: String,
}

/// Current UTC time, RFC 3339 with milliseconds; sorts as text.
pub fn now() -> String {
    stamp(chrono::Utc::now())
}

/// `t` as RFC 3339 with milliseconds (`2026-11-28T21:04:56.123Z`), the notebook's and the
/// remote protocol's time format.
pub fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn check_sqlite_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut header = [0u8; 16];
    let n = f.read(&mut header).map_err(|e| Error::io(path, e))?;
    if n == 0 {
        return Ok(()); // an empty file becomes a new notebook, as SQLite itself treats it
    }
    if n < 16 || &header != b"SQLite format 3\0" {
        return Err(Error::NotLabbook {
            path: path.to_path_buf(),
            why: "it is not an SQLite file".into(),
        });
    }
    Ok(())
}

fn map_write_error(e: rusqlite::Error, path: &Path) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ReadOnly) => Error::ReadOnly(path.to_path_buf()),
        Some(rusqlite::ErrorCode::NotADatabase) => Error::NotLabbook {
            path: path.to_path_buf(),
            why: "it is not an SQLite file".into(),
        },
        _ => Error::Sqlite(e),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("tracker.db"), "tester").unwrap();
        (dir, store)
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::temp_store;
    use super::*;

    #[test]
    fn creates_and_reopens() {
        let (dir, store) = temp_store();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        drop(store);
        let again = Store::open(&dir.path().join("tracker.db"), "x").unwrap();
        let v: i64 = again
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema_version());
    }

    #[test]
    fn refuses_foreign_and_newer_databases() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        let err = Store::open(&foreign, "x").err().unwrap();
        assert!(matches!(err, Error::NotLabbook { .. }), "{err}");

        let text = dir.path().join("notes.db");
        std::fs::write(&text, "just some notes, not a database at all").unwrap();
        let err = Store::open(&text, "x").err().unwrap();
        assert!(err.to_string().contains("not an SQLite file"), "{err}");

        let newer = dir.path().join("newer.db");
        drop(Store::open(&newer, "x").unwrap());
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Store::open(&newer, "x").err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
