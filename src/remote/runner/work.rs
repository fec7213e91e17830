//! A job's blocking side on its worker thread: fetch and check out the requested commit,
//! build, run the config with that build's `labbook run`, keep the log, and turn the
//! outcome into results.
use super::*;

/// The blocking part of a job: fetch, check out, build, train, collect. `gpus` are the
/// GPUs it holds (machine numbering), empty without `--gpus`.
pub(super) fn work(
    opts: &RunnerOptions,
    req: &RunRequest,
    (n, gpus): (u64, &[usize]),
    shared: &Mutex<Shared>,
    kill: &AtomicBool,
) -> Work {
    let started = Utc::now();
    let job = job_dir(opts, n);
    let checkout = opts.workdir.join("checkouts").join(format!("issue-{n}"));
    let log = job.join("log.txt");
    let set_phase = |p: &str| lock(shared).phase = p.to_string();
    let fail = |why: String| Work {
        results: failed_results(opts, req, started, why),
        log_tail: read_tail(&log),
        asset: None,
    };
    // A runner that died while Slurm ran this request's job finds the job again (its id is
    // in the job folder) and follows it, or collects what it left if it ended meanwhile,
    // instead of submitting another.
    let reattach = opts
        .slurm
        .as_ref()
        .and_then(|_| slurm::known_job(opts, &job, req));
    // An earlier attempt at this request on this machine (a runner stopped or killed, the
    // request given back and claimed again) left a checkpoint: continue from it.
    let resume = match reattach {
        Some(_) => None,
        None => resumable(&job, req),
    };
    if resume.is_none() && reattach.is_none() {
        let _ = std::fs::remove_dir_all(&job);
    }
    if let Err(e) = std::fs::create_dir_all(&job) {
        return fail(format!("cannot create {}: {e}", job.display()));
    }
    let marker = json!({ "commit": req.commit, "config": req.config });
    if let Err(e) = std::fs::write(job.join(ATTEMPT), marker.to_string()) {
        return fail(format!("cannot write {}: {e}", job.join(ATTEMPT).display()));
    }
    let bin = if reattach.is_some() {
        // Built by the attempt that submitted the job.
        match &opts.bin {
            Some(b) if b.is_absolute() => b.clone(),
            Some(b) => checkout.join(b),
            None => job.join("labbook"),
        }
    } else {
        let _guard = REPO_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        set_phase("fetching the commit");
        if let Err(e) = checkout_commit(opts, &req.commit, &checkout, &log, kill) {
            return fail(e);
        }
        set_phase("building");
        let cuda = matches!(req.backend.parse(), Ok(BackendChoice::Cuda(_)));
        let build = opts.build.clone().unwrap_or_else(|| {
            let mut b: Vec<String> = ["cargo", "build", "--release"].map(String::from).to_vec();
            if cuda {
                b.extend(["--features".to_string(), "cuda".to_string()]);
            }
            b
        });
        let target = opts.workdir.join("target");
        match run_logged(
            &wrapped(opts, &build),
            &checkout,
            &log,
            &[("CARGO_TARGET_DIR", &target)],
            kill,
            (&opts.env, opts.max_log),
        ) {
            Ok(0) => {}
            Ok(code) => {
                return fail(format!(
                    "the build failed (exit {code}): {}",
                    build.join(" ")
                ));
            }
            Err(e) => return fail(format!("cannot run the build `{}`: {e}", build.join(" "))),
        }
        match &opts.bin {
            Some(b) if b.is_absolute() => b.clone(),
            Some(b) => checkout.join(b),
            None => {
                // A copy, so the next job's build cannot replace it while it runs.
                let built = target.join("release").join("labbook");
                let copy = job.join("labbook");
                if let Err(e) = std::fs::copy(&built, &copy) {
                    return fail(format!("cannot copy {}: {e}", built.display()));
                }
                copy
            }
        }
    };
    let config = job.join("config.toml");
    // The job sees its GPUs from 0: those `--gpus` handed it, or those Slurm allocates.
    let seen_gpus = match &opts.slurm {
        Some(_) => req.gpus_needed(),
        None => gpus.len(),
    };
    let config_text = if seen_gpus == 0 {
        req.config.clone()
    } else {
        match renumbered(&req.config, seen_gpus) {
            Ok(c) => c,
            Err(e) => return fail(e),
        }
    };
    if let Err(e) = std::fs::write(&config, config_text) {
        return fail(format!("cannot write {}: {e}", config.display()));
    }
    // With `--gpus`, a job sees only the GPUs it holds (none for a CPU job).
    let visible: String = gpus
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let visible_env = [("CUDA_VISIBLE_DEVICES", Path::new(&visible))];
    let job_env: &[(&str, &Path)] = if opts.gpus.is_empty() {
        &[]
    } else {
        &visible_env
    };
    // The job's own (empty) app config: the checkout's `configs/labbook.toml` must not
    // give the job a [github] or [runner] section.
    let app_config = job.join("labbook.toml");
    if let Err(e) = std::fs::write(&app_config, "") {
        return fail(format!("cannot write {}: {e}", app_config.display()));
    }
    let db = job.join("tracker.db");
    {
        let mut s = lock(shared);
        s.phase = "training".into();
        s.job_db = Some(db.clone());
    }
    let p = |p: &Path| p.display().to_string();
    let mut cmd = vec![
        p(&bin),
        "--db".into(),
        p(&db),
        "--config".into(),
        p(&job.join("labbook.toml")),
        "run".into(),
    ];
    match &resume {
        // The run's own config snapshot is what resumes; config.toml is the same request.
        Some((run, _)) => cmd.extend(["--resume".to_string(), run.to_string()]),
        None => cmd.push(p(&config)),
    }
    let mut slurm_job: Option<slurm::SlurmJob> = None;
    let code = match &opts.slurm {
        None => match run_logged(
            &wrapped(opts, &cmd),
            &checkout,
            &log,
            job_env,
            kill,
            (&opts.env, opts.max_log),
        ) {
            Ok(c) => c,
            Err(e) => return fail(format!("cannot start `{}`: {e}", p(&bin))),
        },
        Some(sl) => {
            let id = match &reattach {
                Some(j) => j.job_id,
                None => {
                    let script = job.join("job.sbatch");
                    let text =
                        slurm::job_script(opts, sl, (n, req.gpus_needed()), &cmd, &job, &checkout);
                    if let Err(e) = std::fs::write(&script, text) {
                        return fail(format!("cannot write {}: {e}", script.display()));
                    }
                    match slurm::submit(opts, &script) {
                        Ok(id) => {
                            let _ = slurm::remember(&job, req, id);
                            id
                        }
                        Err(e) => return fail(format!("sbatch refused the job: {e}")),
                    }
                }
            };
            let j = slurm::follow(opts, sl, id, shared, kill);
            let code = j
                .exit_code
                .unwrap_or(if j.state == "COMPLETED" { 0 } else { -1 });
            if !db.is_file() && !j.is_live() {
                let mut w = fail(format!(
                    "Slurm job {id} ended ({}) but its notebook {} never appeared: is the runner's workdir on a filesystem the compute nodes share?",
                    j.state,
                    db.display()
                ));
                w.results.slurm = Some(j);
                return w;
            }
            slurm_job = Some(j);
            code
        }
    };
    // Stopped for a reason with results (max_job_time, a closed request): what the run
    // recorded until then is collected and posted. Otherwise (given up) nothing is.
    if kill.load(Ordering::SeqCst) && lock(shared).stopped.is_none() {
        return fail("stopped".into());
    }
    match collect(opts, req, &db, started, code) {
        Ok(mut results) => {
            results.resumed_from = resume.map(|(_, step)| step);
            if let Some(j) = &slurm_job
                && let Some(why) = j.killed_by_slurm()
                && results.status != "succeeded"
            {
                results.status = RunStatus::Failed.to_string();
                results.error = Some(why);
            }
            results.slurm = slurm_job;
            let tail = (results.status != "succeeded")
                .then(|| read_tail(&log))
                .flatten();
            set_phase("exporting the weights");
            let export = |out: &Path| -> std::result::Result<(), String> {
                let run = run_of(&db).ok_or("the job's notebook has no run")?;
                let mut argv = cmd[..5].to_vec(); // the binary, --db and --config
                argv.extend(["export-model".to_string(), run, "--out".to_string(), p(out)]);
                match run_logged(
                    &wrapped(opts, &argv),
                    &checkout,
                    &log,
                    job_env,
                    kill,
                    (&opts.env, opts.max_log),
                ) {
                    Ok(0) => Ok(()),
                    Ok(code) => Err(format!("export-model exited with {code}")),
                    Err(e) => Err(format!("cannot run export-model: {e}")),
                }
            };
            let (asset, weights_error) = match pack_asset(&job, n, &db, export) {
                Ok(a) => (a, None),
                Err(e) => (None, Some(e)),
            };
            let mut results = results;
            results.weights_error = weights_error;
            Work {
                results,
                log_tail: tail,
                asset,
            }
        }
        Err(e) => fail(e),
    }
}

pub(super) fn git(
    opts: &RunnerOptions,
    args: &[&str],
    dir: &Path,
    log: &Path,
    kill: &AtomicBool,
) -> std::result::Result<(), String> {
    let argv: Vec<String> = std::iter::once("git")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    match run_logged(&argv, dir, log, &[], kill, (&opts.env, opts.max_log)) {
        Ok(0) => Ok(()),
        Ok(c) => Err(format!(
            "`git {}` failed (exit {c}); see the log",
            args.join(" ")
        )),
        Err(e) => Err(format!("cannot run git: {e}")),
    }
}

pub(super) fn append_log(log: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    writeln!(f, "labbook runner: {line}")
}

/// 40 lowercase hex digits: what `git rev-parse` prints and all a request may name.
pub(super) fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Fetches the branches of the clone URL into `WORKDIR/repo.git` and checks `sha` out
/// (detached) as a worktree at `checkout`, verified to be exactly `sha`. Only a commit on
/// one of the repo's branches runs: GitHub's commit API also answers for commits that only
/// a fork or a pull request has, and those are never fetched by SHA.
pub(super) fn checkout_commit(
    opts: &RunnerOptions,
    sha: &str,
    checkout: &Path,
    log: &Path,
    kill: &AtomicBool,
) -> std::result::Result<(), String> {
    if !is_full_sha(sha) {
        return Err(format!("{sha:?} is not a full commit SHA"));
    }
    let bare = opts.workdir.join("repo.git");
    let wd = &opts.workdir;
    let bare_s = bare.display().to_string();
    if !bare.join("HEAD").is_file() {
        git(opts, &["init", "--quiet", "--bare", &bare_s], wd, log, kill)?;
    }
    let url = &opts.clone_url;
    // Always: a branch may have moved since the last job (`--prune` drops deleted ones).
    if let Err(e) = git(
        opts,
        &[
            "-C",
            &bare_s,
            "fetch",
            "--quiet",
            "--no-tags",
            "--prune",
            url,
            "+refs/heads/*:refs/remotes/origin/*",
        ],
        wd,
        log,
        kill,
    ) {
        // The branches fetched last time still decide; a commit not among them is refused.
        let _ = append_log(
            log,
            &format!("fetch failed ({e}); using the branches fetched before"),
        );
    }
    let on_branch = job_command("git", &opts.env)
        .args([
            "-C",
            &bare_s,
            "for-each-ref",
            "--format=%(refname)",
            "--contains",
            sha,
            "refs/remotes/origin/",
        ])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !on_branch.status.success() || on_branch.stdout.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "commit {sha} is not on any branch of {url}; only commits pushed to a branch of the repo run"
        ));
    }
    let co = checkout.display().to_string();
    if checkout.exists() {
        let _ = git(
            opts,
            &["-C", &bare_s, "worktree", "remove", "--force", &co],
            wd,
            log,
            kill,
        );
        let _ = std::fs::remove_dir_all(checkout);
    }
    let _ = git(opts, &["-C", &bare_s, "worktree", "prune"], wd, log, kill);
    if let Some(parent) = checkout.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    git(
        opts,
        &[
            "-C", &bare_s, "worktree", "add", "--quiet", "--detach", &co, sha,
        ],
        wd,
        log,
        kill,
    )?;
    let head = job_command("git", &opts.env)
        .args(["-C", &co, "rev-parse", "HEAD"])
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    if head != sha {
        return Err(format!("checked out {head}, not {sha}"));
    }
    Ok(())
}

/// `argv` behind the `[runner] wrap` prefix (for the build and the job, not git).
pub(super) fn wrapped(opts: &RunnerOptions, argv: &[String]) -> Vec<String> {
    opts.wrap.iter().chain(argv).cloned().collect()
}
