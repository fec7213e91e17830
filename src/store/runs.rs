//! Training runs (`R-n`): their rows, status and lifecycle on this machine (the states of a
//! run requested from a remote runner are in `runs/remote.rs`).
use std::collections::BTreeMap;
use std::str::FromStr;

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::Store;
use super::items::rowid_of;
use crate::error::{Error, Result};
use crate::model::{ItemId, Kind, RunId};

mod remote;
pub use remote::RemoteOutcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Queued,
    QueuedRemote,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Crashed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::QueuedRemote,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Crashed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::QueuedRemote => "queued-remote",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Crashed => "crashed",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled | RunStatus::Crashed
        )
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RunStatus::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "`{s}` is not a run status (allowed: {})",
                    RunStatus::ALL.map(|r| r.as_str()).join(", ")
                ))
            })
    }
}

/// What a run was trained with beyond the project's commit and diff: labbook's own
/// version and build, the CPU, the GPU. Compared by `labbook compare` (as `run.*` rows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunEnvironment {
    /// `CARGO_PKG_VERSION` of the labbook that trained the run.
    pub labbook_version: String,
    /// The commit that labbook was built from (embedded at build time), if known.
    pub labbook_commit: Option<String>,
    /// CPU model (`/proc/cpuinfo`).
    pub cpu: Option<String>,
    /// Threads the engine's CPU kernels use.
    pub threads: Option<usize>,
    /// `linux-x86_64`, …
    pub os: String,
    /// On CUDA: GPU name, memory, driver and CUDA versions (from `nvidia-smi`).
    pub gpu: Option<String>,
    /// `text` / `tokens` runs: the data files with sizes and modification times when the
    /// run was created (`recorder::data_description`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// What a new run is created with.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub experiment: Option<ItemId>,
    pub name: Option<String>,
    pub config: String,
    pub config_path: Option<String>,
    pub git_commit: Option<String>,
    pub git_diff: Option<String>,
    pub seed: Option<i64>,
    pub backend: Option<String>,
    pub device: Option<String>,
    pub host: Option<String>,
    pub steps_total: Option<i64>,
    pub sweep: Option<String>,
    pub environment: Option<RunEnvironment>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: RunId,
    pub experiment: Option<ItemId>,
    pub name: Option<String>,
    pub config: String,
    pub config_path: Option<String>,
    pub git_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_diff: Option<String>,
    pub seed: Option<i64>,
    pub backend: Option<String>,
    pub device: Option<String>,
    pub host: Option<String>,
    pub status: RunStatus,
    pub author: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub heartbeat_at: Option<String>,
    pub pid: Option<i64>,
    pub steps_total: Option<i64>,
    pub steps_done: i64,
    pub final_metrics: BTreeMap<String, f64>,
    pub error: Option<String>,
    pub sweep: Option<String>,
    /// `None` for runs recorded before labbook kept it (and for remote requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<RunEnvironment>,
}

const RUN_COLS: &str =
    "r.id, e.kind, e.num, r.name, r.config, r.config_path, r.git_commit, r.git_diff, r.seed,
    r.backend, r.device, r.host, r.status, r.author, r.created_at, r.started_at, r.finished_at,
    r.heartbeat_at, r.pid, r.steps_total, r.steps_done, r.final_metrics, r.error, r.sweep,
    r.environment";

fn run_from_row(r: &Row) -> rusqlite::Result<Run> {
    let conv = |i, e: Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    let experiment = match (r.get::<_, Option<String>>(1)?, r.get::<_, Option<i64>>(2)?) {
        (Some(k), Some(num)) => Some(ItemId {
            kind: k.parse::<Kind>().map_err(|e| conv(1, e))?,
            num,
        }),
        _ => None,
    };
    let status: String = r.get(12)?;
    let metrics: Option<String> = r.get(21)?;
    Ok(Run {
        id: RunId(r.get(0)?),
        experiment,
        name: r.get(3)?,
        config: r.get(4)?,
        config_path: r.get(5)?,
        git_commit: r.get(6)?,
        git_diff: r.get(7)?,
        seed: r.get(8)?,
        backend: r.get(9)?,
        device: r.get(10)?,
        host: r.get(11)?,
        status: status.parse().map_err(|e| conv(12, e))?,
        author: r.get(13)?,
        created_at: r.get(14)?,
        started_at: r.get(15)?,
        finished_at: r.get(16)?,
        heartbeat_at: r.get(17)?,
        pid: r.get(18)?,
        steps_total: r.get(19)?,
        steps_done: r.get(20)?,
        final_metrics: metrics
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default(),
        error: r.get(22)?,
        sweep: r.get(23)?,
        environment: r
            .get::<_, Option<String>>(24)?
            .and_then(|e| serde_json::from_str(&e).ok()),
    })
}

/// One metric value at one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricPoint {
    pub step: i64,
    pub key: String,
    pub value: f64,
    /// Seconds since the run started.
    pub wall_time: f64,
}

/// A running run whose heartbeat is older than this is considered crashed.
pub const STALE_HEARTBEAT: chrono::TimeDelta = chrono::TimeDelta::seconds(15);

/// Whether process `pid` exists on this machine and is not a zombie.
pub fn pid_alive(pid: i64) -> bool {
    let Ok(pid32) = i32::try_from(pid) else {
        return false;
    };
    if pid32 <= 0 {
        return false;
    }
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let r = unsafe { libc::kill(pid32, 0) };
        if r != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
            return false;
        }
        // A killed child not yet reaped by its parent is a zombie: dead for our purposes.
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid32}/stat"))
            && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.trim_start())
        {
            return !rest.starts_with('Z') && !rest.starts_with('X');
        }
        true
    }
    #[cfg(not(unix))]
    {
        true
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub experiment: Option<ItemId>,
    pub status: Option<RunStatus>,
}

impl Store {
    /// Creates a run in status `queued`. An experiment, if given, must exist and be an experiment.
    pub fn create_run(&mut self, new: &NewRun) -> Result<RunId> {
        self.write(|tx, ctx| insert_run(tx, ctx, new))
    }

    pub fn get_run(&self, id: RunId) -> Result<Run> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {RUN_COLS} FROM runs r LEFT JOIN items e ON e.id = r.experiment_id WHERE r.id = ?1"
                ),
                [id.0],
                run_from_row,
            )
            .optional()?
            .ok_or(Error::RunNotFound(id))
    }

    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let exp = filter
            .experiment
            .map(|id| rowid_of(&self.conn, id))
            .transpose()?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {RUN_COLS} FROM runs r LEFT JOIN items e ON e.id = r.experiment_id
             WHERE (?1 IS NULL OR r.experiment_id = ?1) AND (?2 IS NULL OR r.status = ?2)
             ORDER BY r.id"
        ))?;
        let rows = stmt.query_map(
            params![exp, filter.status.map(|s| s.as_str())],
            run_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Marks a run as started by this process.
    pub fn start_run(&mut self, id: RunId, pid: u32) -> Result<()> {
        self.write(|tx, ctx| {
            let n = tx.execute(
                "UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?1), heartbeat_at = ?1,
                    pid = ?2, finished_at = NULL, error = NULL WHERE id = ?3",
                params![ctx.now, pid, id.0],
            )?;
            if n == 0 {
                return Err(Error::RunNotFound(id));
            }
            Ok(())
        })
    }

    /// Appends metric points in one transaction and refreshes the heartbeat. Points are
    /// stored in one packed chunk per key. Re-logging a (key, step) replaces it (resume):
    /// readers keep the latest chunk's value for each step.
    pub fn append_metrics(
        &mut self,
        id: RunId,
        points: &[MetricPoint],
        steps_done: Option<i64>,
    ) -> Result<()> {
        self.write(|tx, ctx| {
            super::metrics::insert_points(tx, id, points)?;
            tx.execute(
                "UPDATE runs SET heartbeat_at = ?1, steps_done = coalesce(?2, steps_done) WHERE id = ?3",
                params![ctx.now, steps_done, id.0],
            )?;
            Ok(())
        })
    }

    /// Records the outcome of a run.
    pub fn finish_run(
        &mut self,
        id: RunId,
        status: RunStatus,
        final_metrics: &BTreeMap<String, f64>,
        error: Option<&str>,
    ) -> Result<()> {
        let metrics = serde_json::to_string(final_metrics).expect("metrics serialise");
        self.write(|tx, ctx| {
            let n = tx.execute(
                "UPDATE runs SET status = ?1, finished_at = ?2, final_metrics = ?3, error = ?4 WHERE id = ?5",
                params![status.as_str(), ctx.now, metrics, error, id.0],
            )?;
            if n == 0 {
                return Err(Error::RunNotFound(id));
            }
            Ok(())
        })
    }

    /// Refreshes a running run's heartbeat (the worker beats every couple of seconds, even
    /// inside long steps and evaluations).
    pub fn heartbeat(&mut self, id: RunId) -> Result<()> {
        self.write(|tx, ctx| {
            tx.execute(
                "UPDATE runs SET heartbeat_at = ?1 WHERE id = ?2 AND status = 'running'",
                params![ctx.now, id.0],
            )?;
            Ok(())
        })
    }

    /// Takes a queued run for this process: `false` if it is no longer queued (cancelled,
    /// or taken by another worker).
    pub fn claim_run(&mut self, id: RunId, pid: u32) -> Result<bool> {
        self.write(|tx, ctx| {
            let n = tx.execute(
                "UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?1), heartbeat_at = ?1,
                    pid = ?2, host = coalesce(?3, host), finished_at = NULL, error = NULL
                 WHERE id = ?4 AND status = 'queued'",
                params![ctx.now, pid, crate::recorder::hostname(), id.0],
            )?;
            Ok(n == 1)
        })
    }

    /// Puts a stopped run (cancelled, crashed or failed) back in the queue to be resumed.
    pub fn requeue_run(&mut self, id: RunId) -> Result<()> {
        self.write(|tx, _| {
            let status: Option<String> = tx
                .query_row("SELECT status FROM runs WHERE id = ?1", [id.0], |r| {
                    r.get(0)
                })
                .optional()?;
            let status: RunStatus = status.ok_or(Error::RunNotFound(id))?.parse()?;
            if !matches!(
                status,
                RunStatus::Cancelled | RunStatus::Crashed | RunStatus::Failed
            ) {
                return Err(Error::Invalid(format!(
                    "{id} is {status}; only cancelled, crashed or failed runs can be resumed"
                )));
            }
            tx.execute(
                "UPDATE runs SET status = 'queued', finished_at = NULL, error = NULL WHERE id = ?1",
                [id.0],
            )?;
            Ok(())
        })
    }

    /// Cancels a queued run (nothing is running it yet). `false` if it was not queued.
    pub fn cancel_queued(&mut self, id: RunId) -> Result<bool> {
        self.write(|tx, ctx| {
            let n = tx.execute(
                "UPDATE runs SET status = 'cancelled', finished_at = ?1, error = 'cancelled before it started'
                 WHERE id = ?2 AND status IN ('queued', 'queued-remote')",
                params![ctx.now, id.0],
            )?;
            Ok(n == 1)
        })
    }

    /// Marks as `crashed` every running run whose worker is gone: its pid is dead on this
    /// host, or its heartbeat is older than [`STALE_HEARTBEAT`]. Metrics already flushed stay.
    /// Returns the runs it marked.
    pub fn reap_crashed(&mut self) -> Result<Vec<RunId>> {
        let host = crate::recorder::hostname();
        let stale = (chrono::Utc::now() - STALE_HEARTBEAT)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        type Candidate = (i64, Option<i64>, Option<String>, Option<String>);
        let candidates: Vec<Candidate> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, pid, host, heartbeat_at FROM runs WHERE status = 'running'",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let mut dead = Vec::new();
        for (id, pid, run_host, beat) in candidates {
            let here = run_host.is_some() && run_host == host;
            let pid_dead = here && pid.is_some_and(|p| !pid_alive(p));
            let beat_stale = beat.as_deref().is_none_or(|b| b < stale.as_str());
            if pid_dead || beat_stale {
                let why = if pid_dead {
                    format!("worker process {} died", pid.unwrap_or_default())
                } else {
                    format!("no heartbeat since {}", beat.unwrap_or_default())
                };
                let marked = self.write(|tx, ctx| {
                    Ok(tx.execute(
                        "UPDATE runs SET status = 'crashed', finished_at = ?1, error = ?2
                         WHERE id = ?3 AND status = 'running'",
                        params![ctx.now, why, id],
                    )? == 1)
                })?;
                if marked {
                    dead.push(RunId(id));
                }
            }
        }
        Ok(dead)
    }
}

/// The newest run of notebook `conn`, read without migrating (a runner's job notebook has
/// one run, written by the requested commit's labbook).
#[derive(Debug, Clone)]
pub struct LatestRun {
    pub id: i64,
    /// As stored; a status this binary does not know is the caller's to judge.
    pub status: String,
    pub error: Option<String>,
    pub host: Option<String>,
    pub device: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub steps_done: i64,
    pub steps_total: Option<i64>,
    pub final_metrics: BTreeMap<String, f64>,
}

/// [`LatestRun`] of notebook `conn`, if it has a run.
pub fn latest_run_in(conn: &rusqlite::Connection) -> rusqlite::Result<Option<LatestRun>> {
    conn.query_row(
        "SELECT id, status, error, host, device, started_at, finished_at, steps_done,
                steps_total, final_metrics
         FROM runs ORDER BY id DESC LIMIT 1",
        [],
        |r| {
            let metrics: Option<String> = r.get(9)?;
            Ok(LatestRun {
                id: r.get(0)?,
                status: r.get(1)?,
                error: r.get(2)?,
                host: r.get(3)?,
                device: r.get(4)?,
                started_at: r.get(5)?,
                finished_at: r.get(6)?,
                steps_done: r.get(7)?,
                steps_total: r.get(8)?,
                final_metrics: metrics
                    .and_then(|m| serde_json::from_str(&m).ok())
                    .unwrap_or_default(),
            })
        },
    )
    .optional()
}

fn insert_run(tx: &rusqlite::Transaction, ctx: &super::Ctx, new: &NewRun) -> Result<RunId> {
    let exp = match new.experiment {
        Some(id) if id.kind != Kind::Experiment => {
            return Err(Error::Invalid(format!("{id} is not an experiment (E-n)")));
        }
        Some(id) => Some(rowid_of(tx, id)?),
        None => None,
    };
    tx.execute(
        "INSERT INTO runs (experiment_id, name, config, config_path, git_commit, git_diff, seed,
            backend, device, host, status, author, created_at, steps_total, sweep, environment)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', ?11, ?12, ?13, ?14, ?15)",
        params![
            exp,
            new.name,
            new.config,
            new.config_path,
            new.git_commit,
            new.git_diff,
            new.seed,
            new.backend,
            new.device,
            new.host,
            ctx.author,
            ctx.now,
            new.steps_total,
            new.sweep,
            new.environment
                .as_ref()
                .map(|e| serde_json::to_string(e).expect("environment serialises"))
        ],
    )?;
    Ok(RunId(tx.last_insert_rowid()))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_store;
    use super::*;
    use crate::model::NewItem;
    use crate::store::latest_values_in;

    #[test]
    fn relogged_steps_replace_and_pre_chunk_rows_are_read() {
        let (_d, mut s) = temp_store();
        let run = s
            .create_run(&NewRun {
                config: String::new(),
                ..Default::default()
            })
            .unwrap();
        // A row written by a schema-2 binary (one row per point).
        s.conn()
            .execute_batch(
                "INSERT INTO metric_keys (key) VALUES ('loss');
                 INSERT INTO metrics (run_id, key_id, step, value, wall_time) VALUES (1, 1, 1, 9.0, 0.0);",
            )
            .unwrap();
        let pt = |step, value| MetricPoint {
            step,
            key: "loss".into(),
            value,
            wall_time: 0.0,
        };
        s.append_metrics(run, &[pt(2, 2.0), pt(3, 3.0)], Some(3))
            .unwrap();
        // A resumed run logs step 3 again: the newer value wins.
        s.append_metrics(run, &[pt(3, 30.0), pt(4, 4.0)], Some(4))
            .unwrap();
        assert_eq!(
            s.metric_series(run, "loss").unwrap(),
            vec![(1, 9.0), (2, 2.0), (3, 30.0), (4, 4.0)]
        );
        assert_eq!(s.metric_keys(run).unwrap(), vec!["loss"]);
    }

    /// What the runner reads from a job's notebook: its newest run, and each metric's
    /// latest value from the newest chunk.
    #[test]
    fn latest_run_and_latest_values_come_from_the_newest_writes() {
        let (_d, mut s) = temp_store();
        let new = || NewRun {
            config: String::new(),
            steps_total: Some(9),
            ..Default::default()
        };
        s.create_run(&new()).unwrap();
        let run = s.create_run(&new()).unwrap();
        let pt = |key: &str, step, value| MetricPoint {
            step,
            key: key.into(),
            value,
            wall_time: step as f64,
        };
        s.append_metrics(run, &[pt("loss", 1, 2.5), pt("acc", 1, 0.1)], Some(1))
            .unwrap();
        s.append_metrics(run, &[pt("loss", 2, 1.5), pt("loss", 3, 0.5)], Some(3))
            .unwrap();
        let latest = latest_run_in(s.conn()).unwrap().unwrap();
        assert_eq!(
            (latest.id, latest.steps_done, latest.steps_total),
            (run.0, 3, Some(9))
        );
        assert_eq!(latest.status, "queued");
        assert_eq!(
            latest_values_in(s.conn(), run.0).unwrap(),
            vec![("acc".to_string(), 0.1), ("loss".to_string(), 0.5)]
        );
    }

    #[test]
    fn run_lifecycle_and_metrics() {
        let (_d, mut s) = temp_store();
        let e = s
            .add_item(NewItem::new(Kind::Experiment, "scan"))
            .unwrap()
            .id;
        let run = s
            .create_run(&NewRun {
                experiment: Some(e),
                config: "[model]\nkind = \"mamba\"\n".into(),
                seed: Some(3),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(run.to_string(), "R-1");
        s.start_run(run, 42).unwrap();
        let pts: Vec<_> = (0..5)
            .map(|i| MetricPoint {
                step: i,
                key: "loss".into(),
                value: if i == 3 {
                    f64::NAN
                } else {
                    1.0 / (i + 1) as f64
                },
                wall_time: i as f64,
            })
            .collect();
        s.append_metrics(run, &pts, Some(5)).unwrap();
        let series = s.metric_series(run, "loss").unwrap();
        assert_eq!(series.len(), 5);
        assert_eq!(series[1], (1, 0.5));
        assert!(series[3].1.is_nan());
        let mut fin = BTreeMap::new();
        fin.insert("loss".to_string(), 0.2);
        s.finish_run(run, RunStatus::Succeeded, &fin, None).unwrap();
        let r = s.get_run(run).unwrap();
        assert_eq!(r.status, RunStatus::Succeeded);
        assert_eq!(r.experiment, Some(e));
        assert_eq!(r.steps_done, 5);
        assert_eq!(r.final_metrics["loss"], 0.2);
        assert_eq!(s.metric_keys(run).unwrap(), vec!["loss"]);
        let by_exp = RunFilter {
            experiment: Some(e),
            ..Default::default()
        };
        assert_eq!(s.list_runs(&by_exp).unwrap().len(), 1);
    }

    #[test]
    fn claim_cancel_requeue_and_reap() {
        let (_d, mut s) = temp_store();
        let host = crate::recorder::hostname();
        let new = || NewRun {
            config: String::new(),
            host: host.clone(),
            ..Default::default()
        };
        // A queued run can be claimed once; a cancelled one cannot be claimed.
        let a = s.create_run(&new()).unwrap();
        assert!(s.claim_run(a, std::process::id()).unwrap());
        assert!(!s.claim_run(a, std::process::id()).unwrap());
        let b = s.create_run(&new()).unwrap();
        assert!(s.cancel_queued(b).unwrap());
        assert!(!s.claim_run(b, 1).unwrap());
        assert_eq!(s.get_run(b).unwrap().status, RunStatus::Cancelled);
        // Healthy (our own pid, fresh heartbeat): left alone.
        assert!(s.reap_crashed().unwrap().is_empty());
        // Dead pid on this host: crashed, metrics kept.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let c = s.create_run(&new()).unwrap();
        assert!(s.claim_run(c, dead).unwrap());
        let p = MetricPoint {
            step: 1,
            key: "loss".into(),
            value: 1.0,
            wall_time: 0.1,
        };
        s.append_metrics(c, &[p], Some(1)).unwrap();
        // Alive pid but a heartbeat older than 15 s: crashed too.
        let d = s.create_run(&new()).unwrap();
        assert!(s.claim_run(d, std::process::id()).unwrap());
        s.conn
            .execute(
                "UPDATE runs SET heartbeat_at = '2000-01-01T00:00:00.000Z' WHERE id = ?1",
                [d.0],
            )
            .unwrap();
        assert_eq!(s.reap_crashed().unwrap(), vec![c, d]);
        let rc = s.get_run(c).unwrap();
        assert_eq!(rc.status, RunStatus::Crashed);
        assert!(rc.error.unwrap().contains("died"));
        assert_eq!(s.metric_series(c, "loss").unwrap().len(), 1);
        assert!(s.get_run(d).unwrap().error.unwrap().contains("heartbeat"));
        assert_eq!(s.get_run(a).unwrap().status, RunStatus::Running);
        // Stopped runs can be requeued for resume; running ones cannot.
        s.requeue_run(c).unwrap();
        assert_eq!(s.get_run(c).unwrap().status, RunStatus::Queued);
        assert!(
            s.requeue_run(a)
                .unwrap_err()
                .to_string()
                .contains("running")
        );
    }

    #[test]
    fn run_needs_an_experiment_id() {
        let (_d, mut s) = temp_store();
        let t = s.add_item(NewItem::new(Kind::Task, "t")).unwrap().id;
        let err = s
            .create_run(&NewRun {
                experiment: Some(t),
                config: String::new(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("not an experiment"), "{err}");
        assert!(s.list_runs(&RunFilter::default()).unwrap().is_empty());
    }
}
