//! The job's own notebook (the `labbook run` of the requested build writes it): its run's
//! progress for status comments and its outcome and curves for the results.
use super::*;
/// The job notebook's run, as far as the results need it.
pub(super) struct JobRun {
    pub(super) id: i64,
    pub(super) status: RunStatus,
    pub(super) error: Option<String>,
    pub(super) host: Option<String>,
    pub(super) device: Option<String>,
    pub(super) started_at: Option<String>,
    pub(super) finished_at: Option<String>,
    pub(super) steps_done: i64,
    pub(super) steps_total: Option<i64>,
    pub(super) final_metrics: std::collections::BTreeMap<String, f64>,
}

/// The latest run of a job notebook (each job's notebook has one), through the store's
/// reader.
pub(super) fn job_run(conn: &rusqlite::Connection) -> rusqlite::Result<Option<JobRun>> {
    Ok(crate::store::latest_run_in(conn)?.map(|r| JobRun {
        id: r.id,
        // A status this runner does not know: the run did not finish as it knows it.
        status: r.status.parse().unwrap_or(RunStatus::Crashed),
        error: r.error,
        host: r.host,
        device: r.device,
        started_at: r.started_at,
        finished_at: r.finished_at,
        steps_done: r.steps_done,
        steps_total: r.steps_total,
        final_metrics: r.final_metrics,
    }))
}

/// Reads the finished run from the job's notebook.
pub(super) fn collect(
    opts: &RunnerOptions,
    req: &RunRequest,
    db: &Path,
    started: DateTime<Utc>,
    code: i32,
) -> std::result::Result<Results, String> {
    if !db.is_file() {
        return Err(format!("the run did not start (exit {code}); see the log"));
    }
    // Read-only and without migrating, like `probe`: the notebook belongs to the checked-out
    // commit's labbook, whose schema may be older or newer than the runner's.
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot read the job's notebook: {e}"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let run = job_run(&conn)
        .map_err(|e| format!("cannot read the run from the job's notebook: {e}"))?
        .ok_or_else(|| format!("the run did not start (exit {code}); see the log"))?;
    let mut curves = std::collections::BTreeMap::new();
    let mut points = std::collections::BTreeMap::new();
    let keys = crate::store::metric_keys_in(&conn, run.id)
        .map_err(|e| format!("cannot read the metrics from the job's notebook: {e}"))?;
    for key in keys {
        let series: Vec<CurvePoint> = crate::store::metric_points_in(&conn, run.id, &key)
            .map_err(|e| format!("cannot read metric {key} from the job's notebook: {e}"))?
            .into_iter()
            .map(|(s, v, w)| {
                (
                    s,
                    v.is_finite().then(|| protocol::round6(v)),
                    (w * 10.0).round() / 10.0,
                )
            })
            .collect();
        points.insert(key.clone(), series.len());
        curves.insert(key, series);
    }
    let status = if run.status.is_finished() {
        run.status
    } else {
        RunStatus::Crashed
    };
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let wall = match (parse(&run.started_at), parse(&run.finished_at)) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64(),
        _ => (Utc::now() - started).as_seconds_f64(),
    };
    let error = run.error.clone().or_else(|| {
        (code != 0 && status != RunStatus::Succeeded)
            .then(|| format!("`labbook run` exited with {code}"))
    });
    Ok(Results {
        v: 2,
        runner: opts.name.clone(),
        nonce: None,
        status: status.to_string(),
        error,
        commit: req.commit.clone(),
        backend: req.backend.clone(),
        host: run.host.clone().or_else(crate::recorder::hostname),
        device: run.device.clone(),
        started_at: run.started_at.clone(),
        finished_at: run.finished_at.clone().or_else(|| Some(stamp(Utc::now()))),
        wall_time_s: wall,
        steps_done: run.steps_done,
        steps_total: run.steps_total,
        final_metrics: run
            .final_metrics
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .collect(),
        curves,
        points,
        resumed_from: None,
        weights: None,
        weights_error: None,
        slurm: None,
    })
}
