//! Runs requested from a remote runner (`labbook run --remote`): filed as `queued-remote`,
//! and finished from what the runner reported (`labbook sync`).
use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};

use super::{MetricPoint, NewRun, RunStatus, insert_run};
use crate::error::{Error, Result};
use crate::model::RunId;
use crate::store::Store;

/// What a remote runner reported about a finished run (see `labbook sync`).
#[derive(Debug, Clone)]
pub struct RemoteOutcome {
    pub status: RunStatus,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub host: Option<String>,
    pub device: Option<String>,
    pub steps_done: i64,
    pub final_metrics: BTreeMap<String, f64>,
    pub error: Option<String>,
    pub points: Vec<MetricPoint>,
}

impl Store {
    /// A run waiting on a remote runner, created with its `remote` record in one
    /// transaction, so a killed `run --remote` never leaves a plain queued run behind.
    pub fn create_remote_run(&mut self, new: &NewRun, remote: &str) -> Result<RunId> {
        self.write(|tx, ctx| {
            let id = insert_run(tx, ctx, new)?;
            tx.execute(
                "UPDATE runs SET status = 'queued-remote', remote = ?1 WHERE id = ?2",
                params![remote, id.0],
            )?;
            Ok(id)
        })
    }

    /// Turns a just-created (queued) run into a remote request: status `queued-remote`,
    /// with `remote` (JSON naming the repo and request issue) stored on the run.
    pub fn queue_remote(&mut self, id: RunId, remote: &str) -> Result<()> {
        self.write(|tx, _| {
            let n = tx.execute(
                "UPDATE runs SET status = 'queued-remote', remote = ?1 WHERE id = ?2 AND status IN ('queued', 'queued-remote')",
                params![remote, id.0],
            )?;
            if n == 0 {
                return Err(Error::Invalid(format!("{id} is not queued")));
            }
            Ok(())
        })
    }

    /// Removes a run that never started (a remote request that could not be filed).
    pub fn delete_unstarted_run(&mut self, id: RunId) -> Result<()> {
        self.write(|tx, _| {
            tx.execute(
                "DELETE FROM runs WHERE id = ?1 AND status IN ('queued', 'queued-remote') AND started_at IS NULL",
                [id.0],
            )?;
            Ok(())
        })
    }

    /// Runs waiting for a remote runner, with their `remote` JSON.
    pub fn remote_runs_pending(&self) -> Result<Vec<(RunId, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, remote FROM runs WHERE status = 'queued-remote' AND remote IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((RunId(r.get(0)?), r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The `remote` JSON of a run (repo and request issue), if it was requested remotely.
    pub fn run_remote(&self, id: RunId) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT remote FROM runs WHERE id = ?1", [id.0], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or(Error::RunNotFound(id))
    }

    /// Records the outcome of a remote run in one transaction: its metric curves, timings,
    /// host and final metrics. `false` (and nothing written) if the run is no longer
    /// `queued-remote` — another sync imported it already.
    pub fn finish_remote_run(&mut self, id: RunId, done: &RemoteOutcome) -> Result<bool> {
        let metrics = serde_json::to_string(&done.final_metrics).expect("metrics serialise");
        self.write(|tx, _| {
            let n = tx.execute(
                "UPDATE runs SET status = ?1, started_at = ?2, finished_at = ?3, host = coalesce(?4, host),
                    device = coalesce(?5, device), steps_done = ?6, final_metrics = ?7, error = ?8,
                    heartbeat_at = NULL, pid = NULL
                 WHERE id = ?9 AND status = 'queued-remote'",
                params![
                    done.status.as_str(),
                    done.started_at,
                    done.finished_at,
                    done.host,
                    done.device,
                    done.steps_done,
                    metrics,
                    done.error,
                    id.0
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            crate::store::metrics::insert_points(tx, id, &done.points)?;
            Ok(true)
        })
    }
}
