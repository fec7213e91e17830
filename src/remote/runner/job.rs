//! One job's life on the runner: the async side that holds the claim, renews it and keeps the
//! status comment current while the job's blocking side (`work.rs`) runs on a worker thread,
//! and the pieces both share (progress, failed results, secrets scrubbed from output).
use super::*;
/// Drops `user:password@` from every URL in `text`, and any remaining occurrence of the
/// clone URL's password or user-info (git sometimes prints them apart from the URL).
pub(super) fn scrub(text: &str, clone_url: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c == '/' || c.is_whitespace() || "'\"`<>()".contains(c))
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    let userinfo = clone_url
        .split_once("://")
        .map(|(_, r)| r.split('/').next().unwrap_or(""))
        .and_then(|authority| authority.rsplit_once('@'))
        .map(|(u, _)| u);
    if let Some(u) = userinfo {
        let secrets = [u, u.split_once(':').map_or("", |(_, p)| p)];
        for secret in secrets.into_iter().filter(|s| s.len() >= 4) {
            out = out.replace(secret, "***");
        }
    }
    out
}

/// How long a given-up job's thread is waited for after it was told to stop.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(15);

/// Runs the blocking part of a job; a panic becomes a failed job (`failed(why)`) instead of
/// a thread that ends without a result while its lease is renewed forever.
pub(super) fn guarded(job: impl FnOnce() -> Work, failed: impl FnOnce(String) -> Work) -> Work {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
        Ok(w) => w,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "?".into());
            failed(format!("the runner's job thread panicked: {msg}"))
        }
    }
}

pub(super) enum JobEnd {
    Ran(String),
    GivenUp(String),
}

/// What the worker thread shares with the async side.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) phase: String,
    pub(super) job_db: Option<PathBuf>,
    pub(super) done: Option<Work>,
    /// Why the async side stopped the job (max_job_time, a closed request): its results
    /// are still posted, with this status and reason.
    pub(super) stopped: Option<(RunStatus, String)>,
    /// The Slurm job's state in words ("Slurm job 12: RUNNING on node-3"), for the status.
    pub(super) slurm: Option<String>,
}

/// The outcome of the blocking part of a job.
pub(super) struct Work {
    pub(super) results: Results,
    pub(super) log_tail: Option<String>,
    /// The weights and curves to upload with the results (see [`pack_asset`]).
    pub(super) asset: Option<PathBuf>,
}

pub(super) async fn run_job(
    mut client: Client,
    repo: String,
    opts: Arc<RunnerOptions>,
    me: Arc<str>,
    w: Won,
) -> Result<JobEnd> {
    let n = w.issue;
    let comment_path = format!("/repos/{repo}/issues/comments/{}", w.claim_id);
    let mut claim = Claim {
        runner: opts.name.clone(),
        nonce: w.nonce.clone(),
        lease_until: stamp(w.lease_until),
        state: ClaimState::Active,
        lease_secs: Some(opts.lease.as_secs().max(1)),
    };
    let started = Utc::now();
    let mut work = if !is_full_sha(&w.request.commit) {
        // Checked before the SHA goes anywhere (an API path, a git argument).
        Work {
            results: failed_results(
                &opts,
                &w.request,
                started,
                format!(
                    "{:?} is not a full commit SHA (40 lowercase hex digits); not run",
                    protocol::tail_chars(&w.request.commit, 60)
                ),
            ),
            log_tail: None,
            asset: None,
        }
    } else if client
        .get_if_exists(&format!("/repos/{repo}/commits/{}", w.request.commit))
        .await?
        .is_none()
    {
        // Never run code that is not a commit of the configured repo.
        Work {
            results: failed_results(
                &opts,
                &w.request,
                started,
                format!("commit {} is not in {repo}; not run", w.request.commit),
            ),
            log_tail: None,
            asset: None,
        }
    } else {
        let shared = Arc::new(Mutex::new(Shared {
            phase: "starting".into(),
            ..Default::default()
        }));
        let kill = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, kill, opts, req, gpus) = (
                shared.clone(),
                kill.clone(),
                opts.clone(),
                w.request.clone(),
                w.gpus.clone(),
            );
            std::thread::Builder::new()
                .name(format!("job #{n}"))
                .spawn(move || {
                    let work = guarded(
                        || work(&opts, &req, (n, &gpus), &shared, &kill),
                        |why| Work {
                            results: failed_results(&opts, &req, started, why),
                            log_tail: None,
                            asset: None,
                        },
                    );
                    lock(&shared).done = Some(work);
                })
                .map_err(|e| Error::Github(format!("cannot start a job thread: {e}")))?
        };
        let renew_every = (opts.lease / 3)
            .min(opts.status_every)
            .max(Duration::from_millis(200));
        let margin = lease_margin(opts.lease);
        let job_started = Instant::now();
        // On this machine's monotonic clock: the lease counts from when the claim (or the
        // last renewal) was sent, so no wall clock can stretch it.
        let mut lease_ends = w.sent + opts.lease;
        let mut last_renew = Instant::now();
        let mut give_up: Option<String> = None;
        let mut killed_at: Option<Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if lock(&shared).done.is_some() {
                break;
            }
            if thread.is_finished() {
                // Ended without a result (cannot happen with `guarded`): never wait for one.
                break;
            }
            if let Some(t) = killed_at {
                // Killed: its children get SIGTERM, then SIGKILL after a grace period; a
                // thread stuck elsewhere (a lock, a hung syscall) is not waited for beyond
                // this. The lease is still renewed meanwhile (below), so a stopped job's
                // results can be posted under its claim.
                if t.elapsed() >= KILL_WAIT {
                    break;
                }
            }
            let stop_for = |status: RunStatus, why: String| {
                let mut sh = lock(&shared);
                if sh.stopped.is_none() {
                    sh.stopped = Some((status, why));
                }
            };
            if give_up.is_none() && opts.stop.load(Ordering::SeqCst) {
                give_up = Some("the runner is stopping".into());
            }
            if let Some(max) = opts.max_job_time
                && job_started.elapsed() >= max
            {
                stop_for(
                    RunStatus::Failed,
                    format!(
                        "stopped: the job ran longer than max_job_time ({})",
                        protocol::human_secs(max.as_secs_f64())
                    ),
                );
            }
            // Checked on every turn, not only when a renewal is due: a job must not run on
            // (nor post results) once its lease may have passed.
            if give_up.is_none() && Instant::now() + margin >= lease_ends {
                give_up = Some("the lease ran out before it could be renewed".into());
            }
            if give_up.is_none() && last_renew.elapsed() >= renew_every {
                last_renew = Instant::now();
                // The probe opens the job's notebook (a busy wait of up to 2 s): off the
                // runtime's one thread, so it does not hold up other jobs' renewals.
                let probe_of = Arc::clone(&shared);
                let status = tokio::task::spawn_blocking(move || status_line(&probe_of))
                    .await
                    .unwrap_or_else(|_| "training".into());
                let status = match held_gpus(&w.gpus) {
                    Some(g) => format!("{g} — {status}"),
                    None => status,
                };
                let budget = lease_ends.saturating_duration_since(Instant::now() + margin);
                match renew(
                    &mut client,
                    (&repo, n),
                    &comment_path,
                    &opts,
                    (&claim, w.claimed_at.as_deref(), w.skew),
                    &status,
                    budget,
                )
                .await
                {
                    Ok(Renewal::Held { sent }) => lease_ends = sent + opts.lease,
                    Ok(Renewal::Closed) => stop_for(
                        RunStatus::Cancelled,
                        "the request was closed on GitHub".into(),
                    ),
                    Ok(Renewal::Lost) => {
                        give_up = Some("another runner holds the request now".into())
                    }
                    Err(e) => (opts.events)(&format!("#{n}: lease renewal failed: {e}")),
                }
            }
            let stopping = give_up.is_some() || lock(&shared).stopped.is_some();
            if stopping && killed_at.is_none() {
                kill.store(true, Ordering::SeqCst);
                killed_at = Some(Instant::now());
            }
            if give_up.is_some() {
                break;
            }
        }
        if let Some(why) = give_up {
            claim.state = ClaimState::Withdrawn;
            // Bounded: a withdrawal that cannot get through is harmless (the lease ends).
            let _ = tokio::time::timeout(
                withdraw_wait(opts.lease),
                client.patch(
                    &comment_path,
                    &json!({ "body": claim_body(&opts, &claim, &why) }),
                ),
            )
            .await;
            // The job's children are stopping (SIGTERM, then SIGKILL); wait for it within
            // the same bound as before.
            let deadline = Instant::now() + KILL_WAIT;
            while !thread.is_finished() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Ok(JobEnd::GivenUp(why));
        }
        let (done, stopped) = {
            let mut sh = lock(&shared);
            (sh.done.take(), sh.stopped.take())
        };
        let mut work = done.unwrap_or_else(|| Work {
            results: failed_results(
                &opts,
                &w.request,
                started,
                "the job ended without a result".into(),
            ),
            log_tail: None,
            asset: None,
        });
        if let Some((status, why)) = stopped {
            work.results.status = status.to_string();
            work.results.error = Some(why);
            if work.log_tail.is_none() {
                work.log_tail = read_tail(&job_dir(&opts, n).join("log.txt"));
            }
        }
        work
    };
    work.results.nonce = Some(w.nonce.clone());
    // The comment is public: no credentials of the clone URL in the error or the log tail
    // (git prints the URL it fetched from).
    work.results.error = work.results.error.map(|e| scrub(&e, &opts.clone_url));
    work.log_tail = work.log_tail.map(|t| scrub(&t, &opts.clone_url));
    // Still ours? (If renewals failed until the lease ran out, another runner may hold it.)
    let listed = list_comments(&mut client, &repo, n, None, &opts.runners).await?;
    if let Some((_, other)) = winning_claim(&listed.comments, listed.now)
        && other.nonce != w.nonce
    {
        return Ok(JobEnd::GivenUp(
            "another runner holds the request now".into(),
        ));
    }
    if let Some(why) = results_refused(&listed.comments, &w.nonce) {
        return Ok(JobEnd::GivenUp(why));
    }
    if let Some(path) = work.asset.take() {
        match upload_weights(&mut client, &repo, n, &path).await {
            Ok(asset) => {
                (opts.events)(&format!(
                    "#{n}: weights uploaded ({}, {} bytes)",
                    asset.name, asset.size
                ));
                work.results.weights = Some(asset);
            }
            Err(e) => {
                (opts.events)(&format!("#{n}: weights upload failed: {e}"));
                work.results.weights_error = Some(e.to_string());
            }
        }
    }
    // Posted on a closed request too: whoever closed it sees how far the run got.
    let status = work.results.status.clone();
    let body = protocol::results_comment(&work.results, work.log_tail.as_deref());
    post_results(
        &mut client,
        (&repo, n),
        (&me, &w.nonce),
        &opts.runners,
        &body,
    )
    .await?;
    close_issue(&mut client, &repo, n, status == "succeeded").await?;
    claim.state = ClaimState::Finished;
    let _ = client
        .patch(
            &comment_path,
            &json!({ "body": claim_body(&opts, &claim, &format!("{status}; results below")) }),
        )
        .await;
    Ok(JobEnd::Ran(status))
}

pub(super) fn job_dir(opts: &RunnerOptions, n: u64) -> PathBuf {
    opts.workdir.join("jobs").join(format!("issue-{n}"))
}

pub(super) fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// "training, step 120/1000 — loss 0.4312, accuracy 0.5100", read from the job's notebook.
pub(super) fn status_line(shared: &Mutex<Shared>) -> String {
    let slurm = lock(shared).slurm.clone();
    let status = progress_line(shared);
    match slurm {
        Some(j) => format!("{j} — {status}"),
        None => status,
    }
}

/// The phase, or the run's progress while it trains.
fn progress_line(shared: &Mutex<Shared>) -> String {
    let (phase, db) = {
        let s = lock(shared);
        (s.phase.clone(), s.job_db.clone())
    };
    let Some(db) = db.filter(|_| phase == "training") else {
        return phase;
    };
    match probe(&db) {
        Some((done, total, metrics)) => {
            let mut s = format!(
                "training, step {done}/{}",
                total.map(|t| t.to_string()).unwrap_or_else(|| "?".into())
            );
            if !metrics.is_empty() {
                let m: Vec<String> = metrics
                    .iter()
                    .take(8)
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect();
                s.push_str(&format!(" — {}", m.join(", ")));
            }
            s
        }
        None => "training (starting)".into(),
    }
}

/// Steps done, steps total, latest value per metric.
pub(super) type Progress = (i64, Option<i64>, Vec<(String, f64)>);

/// Steps done, steps total and the latest value of each metric of the job's run. Read-only
/// and without migrating: the notebook belongs to the checked-out commit's labbook.
pub(super) fn probe(db: &Path) -> Option<Progress> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.busy_timeout(Duration::from_secs(2)).ok()?;
    let run = crate::store::latest_run_in(&conn).ok()??;
    if run.steps_done == 0 {
        return None;
    }
    let metrics = crate::store::latest_values_in(&conn, run.id).unwrap_or_default();
    Some((
        run.steps_done,
        run.steps_total,
        metrics.into_iter().collect(),
    ))
}

pub(super) fn failed_results(
    opts: &RunnerOptions,
    req: &RunRequest,
    started: DateTime<Utc>,
    why: String,
) -> Results {
    let now = Utc::now();
    Results {
        v: 2,
        runner: opts.name.clone(),
        nonce: None,
        status: RunStatus::Failed.to_string(),
        error: Some(why),
        commit: req.commit.clone(),
        backend: req.backend.clone(),
        host: crate::recorder::hostname(),
        device: None,
        started_at: Some(stamp(started)),
        finished_at: Some(stamp(now)),
        wall_time_s: (now - started).as_seconds_f64(),
        steps_done: 0,
        steps_total: None,
        final_metrics: Default::default(),
        curves: Default::default(),
        points: Default::default(),
        resumed_from: None,
        weights: None,
        weights_error: None,
        slurm: None,
    }
}
