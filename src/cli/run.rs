use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, Parser};
use indicatif::{ProgressBar, ProgressStyle};
use labbook::model::{ItemId, RunId};
use labbook::recorder::{self, Progress, Provenance};
use labbook::store::RunStatus;
use labbook_models::config::RunConfig;

use super::Env;

mod remote;
use remote::remote;
pub use remote::remote_from;

#[derive(ClapArgs)]
pub struct Args {
    /// Run config (TOML), e.g. configs/selective-copying-mamba.toml.
    #[arg(value_name = "CONFIG", required_unless_present = "resume")]
    config_file: Option<PathBuf>,
    /// Override a config value, e.g. `--set train.lr=3e-4` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
    /// Record the run under this experiment.
    #[arg(long, short = 'e', value_name = "E-n")]
    experiment: Option<ItemId>,
    /// Train in a background process (log in runs/R-n/log.txt); prints R-n and returns.
    #[arg(long)]
    detach: bool,
    /// Continue a cancelled, crashed or failed run from its last checkpoint.
    #[arg(long, value_name = "R-n", conflicts_with_all = ["config_file", "sets", "experiment", "sweep"])]
    resume: Option<RunId>,
    /// Sweep a key over values, e.g. `--sweep train.lr=1e-3,3e-4` (repeatable: the grid of
    /// all combinations). Sweeps always run detached.
    #[arg(long, value_name = "SECTION.KEY=V1,V2,...")]
    sweep: Vec<String>,
    /// At most this many runs of a sweep train at once.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    parallel: u32,
    /// Run it on the GPU machine: files a run-request issue in `[github] repo` for the
    /// current (pushed, clean) commit (one per point with `--sweep`); `labbook sync` brings
    /// the results back.
    #[arg(long, conflicts_with_all = ["detach", "resume"])]
    remote: bool,
    /// Backend for a remote run (`cpu`, `cuda`, `cuda:N`); default: the config's.
    #[arg(long, requires = "remote", value_name = "BACKEND")]
    backend: Option<String>,
    /// GPUs a remote CUDA run needs (default: the config's `devices`, or 1); the runner
    /// hands it that many with `CUDA_VISIBLE_DEVICES`.
    #[arg(long, requires = "remote", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    gpus: Option<u32>,
}

/// `labbook run-worker R-n`: trains a queued run in this process (what `--detach` starts).
#[derive(ClapArgs)]
pub struct WorkerArgs {
    run: RunId,
    /// Continue from the run's checkpoint.
    #[arg(long)]
    resume: bool,
}

/// `labbook sweep-worker SWEEP`: starts the queued runs of a sweep, N at a time.
#[derive(ClapArgs)]
pub struct SweepWorkerArgs {
    sweep: String,
    #[arg(long, default_value_t = 1)]
    parallel: u32,
}

/// `labbook run` as typed into the TUI's launch prompt: the flags of the command line.
#[derive(Parser)]
#[command(name = "run")]
struct RunLine {
    #[command(flatten)]
    args: Args,
}

/// What `run --detach` (or `--sweep`) started: its workers outlive this process.
#[derive(Debug, Clone, PartialEq)]
pub enum Detached {
    /// One run, trained by its own worker process.
    Run { run: RunId, pid: u32 },
    /// A sweep's queued runs (each with its point of the grid), trained by a supervisor
    /// process at most `parallel` at a time.
    Sweep {
        sweep: String,
        runs: Vec<(RunId, Vec<(String, String)>)>,
        parallel: u32,
        log: PathBuf,
    },
}

/// Where config warnings go: stderr for the CLI; the log for the TUI, which owns the screen.
pub type Warn<'a> = &'a mut dyn FnMut(&str);

/// The parsed config with `--set` overrides applied; every error names the file or key.
pub fn load_config(path: &std::path::Path, sets: &[String]) -> Result<RunConfig> {
    load_config_with(path, sets, &[], &mut |w| eprintln!("warning: {w}"))
}

/// `load_config` plus `extra` overrides (a sweep point), all applied before one validation.
fn load_config_with(
    path: &std::path::Path,
    sets: &[String],
    extra: &[(String, String)],
    warn: Warn,
) -> Result<RunConfig> {
    let mut cfg = RunConfig::from_file(path)?;
    let mut pairs = Vec::new();
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("`--set {s}`: expected SECTION.KEY=VALUE"))?;
        pairs.push((k.trim(), v.trim()));
    }
    pairs.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for warning in cfg.set_all(&pairs)? {
        warn(&warning);
    }
    Ok(cfg)
}

struct Bar {
    bar: ProgressBar,
}

impl Progress for Bar {
    fn step(&mut self, step: u64, total: u64, metrics: &[(String, f64)]) {
        self.bar.set_length(total);
        self.bar.set_position(step);
        let get = |k: &str| metrics.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let mut msg = String::new();
        if let Some(l) = get("loss") {
            msg.push_str(&format!("loss {l:.4}"));
        }
        if let Some(a) = get("accuracy") {
            msg.push_str(&format!("  acc {:.1}%", a * 100.0));
        }
        if let Some(t) = get("tokens_per_s") {
            msg.push_str(&format!("  {t:.0} tok/s"));
        }
        self.bar.set_message(msg);
    }

    fn eval(&mut self, step: u64, metrics: &[(String, f64)]) {
        let line = metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join("  ");
        self.bar.println(format!("eval @ {step}: {line}"));
    }
}

pub fn cmd_run(env: &Env, a: Args) -> Result<()> {
    let mut warn = |w: &str| eprintln!("warning: {w}");
    if a.remote {
        let config_file = a.config_file.clone().expect("clap requires CONFIG");
        return remote(env, &config_file, &a, &mut warn);
    }
    // Sweeps always run detached.
    if a.detach || !a.sweep.is_empty() {
        let started = start_detached(env, &a, &mut warn)?;
        return print_detached(env, &started);
    }
    if let Some(run) = a.resume {
        let (mut store, cfg) = prepare_resume(env, run)?;
        return foreground(env, &mut store, run, &cfg, true);
    }
    let config_file = a.config_file.clone().expect("clap requires CONFIG");
    let (mut store, run, cfg) = create(env, &config_file, &a, &mut warn)?;
    foreground(env, &mut store, run, &cfg, false)
}

/// `labbook run ARGS... --detach` without a child `labbook`: the TUI's launch prompt. The
/// same clap `Args` parse `args`, so the prompt accepts and refuses what the command line
/// does; a usage error is clap's one-line message.
pub fn start_detached_from(env: &Env, args: &[String], warn: Warn) -> Result<Detached> {
    let argv = std::iter::once("run")
        .chain(args.iter().map(String::as_str))
        .chain(["--detach"]);
    let line = RunLine::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!(super::usage_error_line(&e.to_string())))?;
    start_detached(env, &line.args, warn)
}

/// Checks everything about the request, records the run (or the sweep's runs) and starts
/// the worker process that trains it, in its own session so it outlives this process.
pub fn start_detached(env: &Env, a: &Args, warn: Warn) -> Result<Detached> {
    if let Some(run) = a.resume {
        prepare_resume(env, run)?;
        let pid = spawn_worker(env, run, true)?;
        return Ok(Detached::Run { run, pid });
    }
    let config_file = a.config_file.clone().expect("clap requires CONFIG");
    if !a.sweep.is_empty() {
        return sweep(env, &config_file, a, warn);
    }
    let (mut store, run, _) = create(env, &config_file, a, warn)?;
    match spawn_worker(env, run, false) {
        Ok(pid) => Ok(Detached::Run { run, pid }),
        Err(e) => {
            let _ = store.cancel_queued(run);
            Err(e)
        }
    }
}

/// Opens and checks a `text` / `tokens` run's data files (and `train.init_from`) here, so
/// that a missing file or a bad token is refused before a run is recorded (remote runs read
/// their files on the runner, so `--remote` does not check).
fn check_data(cfg: &RunConfig) -> Result<()> {
    if cfg.task.kind.reads_files() {
        labbook_models::tasks::Task::open(&cfg.task, &cfg.eval_lens())?;
    }
    if let Some(init) = &cfg.train.init_from {
        let path = labbook_models::data::expand_path(init)?;
        if !path.is_file() {
            anyhow::bail!("train.init_from: {}: no such file", path.display());
        }
    }
    Ok(())
}

/// Validates the config and records a queued run for it.
fn create(
    env: &Env,
    config_file: &std::path::Path,
    a: &Args,
    warn: Warn,
) -> Result<(labbook::Store, RunId, RunConfig)> {
    // Everything that can be wrong with the request is checked before any row is written.
    let cfg = load_config_with(config_file, &a.sets, &[], warn)?;
    cfg.validate()?;
    check_devices(&cfg)?;
    check_data(&cfg)?;
    let mut store = env.open()?;
    if let Some(e) = a.experiment {
        store.require(e)?;
    }
    let workdir = std::env::current_dir()?;
    let provenance = Provenance::capture(&workdir);
    let run = recorder::create_run(
        &mut store,
        &cfg,
        Some(config_file),
        a.experiment,
        &provenance,
    )?;
    Ok((store, run, cfg))
}

/// Every device of the run is one this binary can drive.
fn check_devices(cfg: &RunConfig) -> Result<()> {
    for d in cfg.train.device_list() {
        d.check_available()?;
    }
    Ok(())
}

fn print_detached(env: &Env, started: &Detached) -> Result<()> {
    match started {
        Detached::Run { run, pid } => {
            let log = recorder::run_dir(&env.db_path, *run).join("log.txt");
            if env.json {
                return super::output::json(
                    &serde_json::json!({ "run": run, "pid": pid, "log": log.display().to_string() }),
                );
            }
            println!("{run}");
            eprintln!(
                "{run}: training in the background (pid {pid}); log {}; `labbook cancel {run}` stops it",
                log.display()
            );
        }
        Detached::Sweep {
            sweep,
            runs,
            parallel,
            log,
        } => {
            if env.json {
                return super::output::json(&serde_json::json!({
                    "sweep": sweep,
                    "parallel": parallel,
                    "runs": runs.iter().map(|(r, c)| serde_json::json!({
                        "run": r,
                        "set": c.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                }));
            }
            for (r, c) in runs {
                let set = c
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                println!("{r}  {set}");
            }
            eprintln!(
                "sweep {sweep}: {} runs, at most {parallel} at a time (supervisor log {})",
                runs.len(),
                log.display()
            );
        }
    }
    Ok(())
}

/// Checks that run `run` can continue from its last checkpoint and queues it again.
fn prepare_resume(env: &Env, run: RunId) -> Result<(labbook::Store, RunConfig)> {
    let mut store = env.open()?;
    let r = store.get_run(run)?;
    let cfg = RunConfig::parse(&r.config, &format!("{run} config snapshot"))?;
    check_devices(&cfg)?;
    let dir = recorder::run_dir(&env.db_path, run);
    if !recorder::has_checkpoint(&dir) {
        anyhow::bail!(
            "{run} has no checkpoint in {} to resume from (a run checkpoints every train.checkpoint_every steps, every 10 minutes without it, and at the end)",
            dir.display()
        );
    }
    store.requeue_run(run)?;
    Ok((store, cfg))
}

/// Trains run `run` in this process with a progress bar; Ctrl-C cancels (after a checkpoint).
fn foreground(
    env: &Env,
    store: &mut labbook::Store,
    run: RunId,
    cfg: &RunConfig,
    resume: bool,
) -> Result<()> {
    let runs_dir = recorder::run_dir(&env.db_path, run);
    let resume_from = resume.then(|| runs_dir.clone());

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // A second Ctrl-C is left to the default handler's job: the flag is already set.
        let _ = ctrlc::set_handler(move || cancel.store(true, Ordering::SeqCst));
    }
    // The header goes out before the bar exists: a bar draws as soon as it is styled, and a
    // line printed after that lands behind the bar's first frame.
    if !env.json {
        eprintln!(
            "{run}: training {} (d_model {}) on {}, {} steps, backend {}",
            cfg.layer_pattern(),
            cfg.model.d_model,
            cfg.task.kind,
            cfg.train.steps,
            labbook::recorder::device_summary(&cfg.train.device_list())
        );
    }
    let bar = if env.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(cfg.train.steps)
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(run.to_string());
    let mut progress = Bar { bar };
    let outcome = recorder::train_run_resuming(
        store,
        run,
        cfg,
        &runs_dir,
        resume_from.as_deref(),
        &cancel,
        &mut progress,
    )?;
    progress.bar.finish_and_clear();
    if env.json {
        super::output::json(&outcome)?;
    } else {
        println!(
            "{run} {} after {} steps in {:.1}s",
            outcome.status, outcome.steps, outcome.wall_time_s
        );
        for (k, v) in &outcome.final_metrics {
            println!("  {k:<24} {}", labbook::compare::human_number(*v));
        }
    }
    match outcome.status {
        RunStatus::Failed => anyhow::bail!("{run} failed: {}", outcome.error.unwrap_or_default()),
        RunStatus::Cancelled => {
            anyhow::bail!("{run} cancelled (checkpoint in {})", runs_dir.display())
        }
        _ => Ok(()),
    }
}

/// The notebook path as an absolute path, for child processes.
fn abs_db(env: &Env) -> Result<PathBuf> {
    Ok(std::path::absolute(&env.db_path)?)
}

/// Starts `labbook run-worker R-n` in its own session, detached from this terminal,
/// with stdout and stderr appended to `runs/R-n/log.txt`. Returns the worker's pid.
fn spawn_worker(env: &Env, run: RunId, resume: bool) -> Result<u32> {
    let dir = recorder::run_dir(&env.db_path, run);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = dir.join("log.txt");
    let mut cmd = worker_command(env, &log)?;
    cmd.arg("run-worker").arg(run.to_string());
    if resume {
        cmd.arg("--resume");
    }
    let child = cmd.spawn().context("cannot start the run worker")?;
    Ok(child.id())
}

/// The same binary, with the notebook and app config of this process, in a new session
/// and process group (so Ctrl-C in the terminal, closing it, or quitting the TUI does not
/// reach it).
fn worker_command(env: &Env, log: &std::path::Path) -> Result<std::process::Command> {
    let exe = std::env::current_exe().context("cannot find the labbook executable")?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--db").arg(abs_db(env)?);
    if let Some(cfg) = &env.config_path {
        cmd.arg("--config").arg(std::path::absolute(cfg)?);
    }
    if let Some(dir) = env.db_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        cmd.current_dir(dir);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid(2) is async-signal-safe; it only detaches the child into its own
        // session and process group (no terminal: no SIGHUP or Ctrl-C from ours).
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    Ok(cmd)
}

/// A progress sink for the log file: one line a second plus every evaluation.
struct LogLines {
    last: std::time::Instant,
}

impl Progress for LogLines {
    fn step(&mut self, step: u64, total: u64, metrics: &[(String, f64)]) {
        if self.last.elapsed() >= std::time::Duration::from_secs(1) || step == total {
            self.last = std::time::Instant::now();
            let line = metrics
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect::<Vec<_>>()
                .join("  ");
            println!("step {step}/{total}  {line}");
        }
    }

    fn eval(&mut self, step: u64, metrics: &[(String, f64)]) {
        let line = metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join("  ");
        println!("eval @ {step}: {line}");
    }
}

pub fn cmd_worker(env: &Env, a: WorkerArgs) -> Result<()> {
    let mut store = env.open()?;
    let run = store.get_run(a.run)?;
    let cfg = RunConfig::parse(&run.config, &format!("{} config snapshot", a.run))?;
    if !store.claim_run(a.run, std::process::id())? {
        println!("{}: {}; nothing to do", a.run, store.get_run(a.run)?.status);
        return Ok(());
    }
    let dir = recorder::run_dir(&env.db_path, a.run);
    let resume_from = (a.resume && recorder::has_checkpoint(&dir)).then(|| dir.clone());
    println!(
        "{}: pid {} training {} ({} steps){}",
        a.run,
        std::process::id(),
        cfg.layer_pattern(),
        cfg.train.steps,
        if resume_from.is_some() {
            " resuming from the last checkpoint"
        } else {
            ""
        }
    );
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // SIGINT and SIGTERM (ctrlc's "termination" feature): stop after a checkpoint.
        let _ = ctrlc::set_handler(move || cancel.store(true, Ordering::SeqCst));
    }
    let mut progress = LogLines {
        last: std::time::Instant::now(),
    };
    let outcome = recorder::train_run_resuming(
        &mut store,
        a.run,
        &cfg,
        &dir,
        resume_from.as_deref(),
        &cancel,
        &mut progress,
    );
    let outcome = outcome?;
    println!(
        "{} {} after {} steps in {:.1}s{}",
        a.run,
        outcome.status,
        outcome.steps,
        outcome.wall_time_s,
        outcome
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// Parses `--sweep KEY=V1,V2` flags into (key, values).
fn parse_sweeps(flags: &[String]) -> Result<Vec<(String, Vec<String>)>> {
    flags
        .iter()
        .map(|f| {
            let (k, vs) = f
                .split_once('=')
                .with_context(|| format!("`--sweep {f}`: expected SECTION.KEY=V1,V2,..."))?;
            let vals: Vec<String> = vs
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            if vals.is_empty() {
                anyhow::bail!("`--sweep {f}`: no values");
            }
            Ok((k.trim().to_string(), vals))
        })
        .collect()
}

/// Every combination of the sweep values, as `--set`-style pairs.
fn grid(axes: &[(String, Vec<String>)]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (k, vals) in axes {
        out = out
            .into_iter()
            .flat_map(|combo| {
                vals.iter().map(move |v| {
                    let mut c = combo.clone();
                    c.push((k.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

/// `labbook run CONFIG --sweep ...`: validates every point of the grid, creates one queued
/// run per point (sharing a sweep id), and starts a detached supervisor that trains them
/// at most `--parallel` at a time.
fn sweep(env: &Env, config_file: &std::path::Path, a: &Args, warn: Warn) -> Result<Detached> {
    let axes = parse_sweeps(&a.sweep)?;
    let mut cfgs = Vec::new();
    for combo in grid(&axes) {
        let cfg = load_config_with(config_file, &a.sets, &combo, warn)?;
        check_devices(&cfg)?;
        check_data(&cfg)?;
        cfgs.push((combo, cfg));
    }
    let mut store = env.open()?;
    if let Some(e) = a.experiment {
        store.require(e)?;
    }
    let provenance = Provenance::capture(&std::env::current_dir()?);
    let sweep_id = format!("S{}", chrono::Utc::now().format("%Y%m%d-%H%M%S%.3f"));
    let mut runs = Vec::new();
    for (combo, cfg) in &cfgs {
        let run = recorder::create_run_in_sweep(
            &mut store,
            cfg,
            Some(config_file),
            a.experiment,
            &provenance,
            Some((&sweep_id, combo)),
        )?;
        runs.push((run, combo.clone()));
    }
    let runs_root = recorder::run_dir(&env.db_path, RunId(0))
        .parent()
        .expect("runs dir has a parent")
        .to_path_buf();
    std::fs::create_dir_all(&runs_root)?;
    let log = runs_root.join(format!("{sweep_id}.log"));
    let mut cmd = worker_command(env, &log)?;
    cmd.arg("sweep-worker")
        .arg(&sweep_id)
        .arg("--parallel")
        .arg(a.parallel.to_string());
    if let Err(e) = cmd.spawn() {
        for (r, _) in &runs {
            let _ = store.cancel_queued(*r);
        }
        return Err(anyhow::Error::new(e).context("cannot start the sweep supervisor"));
    }
    Ok(Detached::Sweep {
        sweep: sweep_id,
        runs,
        parallel: a.parallel,
        log,
    })
}

/// The sweep supervisor: starts queued runs of the sweep as child workers, at most
/// `parallel` at once, until none is left. Cancelled runs are skipped.
pub fn cmd_sweep_worker(env: &Env, a: SweepWorkerArgs) -> Result<()> {
    let store = env.open()?;
    let mut started = std::collections::HashSet::new();
    let mut children: Vec<(RunId, std::process::Child)> = Vec::new();
    println!("sweep {}: supervisor pid {}", a.sweep, std::process::id());
    loop {
        children.retain_mut(|(r, c)| match c.try_wait() {
            Ok(Some(st)) => {
                println!("{r}: worker exited ({st})");
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
        let queued: Vec<RunId> = store
            .list_runs(&labbook::store::RunFilter {
                status: Some(RunStatus::Queued),
                ..Default::default()
            })?
            .into_iter()
            .filter(|r| r.sweep.as_deref() == Some(a.sweep.as_str()) && !started.contains(&r.id))
            .map(|r| r.id)
            .collect();
        if queued.is_empty() && children.is_empty() {
            break;
        }
        for run in queued {
            if children.len() >= a.parallel as usize {
                break;
            }
            let dir = recorder::run_dir(&env.db_path, run);
            std::fs::create_dir_all(&dir)?;
            let mut cmd = worker_command(env, &dir.join("log.txt"))?;
            cmd.arg("run-worker").arg(run.to_string());
            match cmd.spawn() {
                Ok(child) => {
                    println!("{run}: started worker pid {}", child.id());
                    started.insert(run);
                    children.push((run, child));
                }
                Err(e) => {
                    println!("{run}: cannot start a worker: {e}");
                    started.insert(run);
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    println!("sweep {}: done", a.sweep);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tui_prompt_is_checked_like_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            db_path: dir.path().join("tracker.db"),
            config: Default::default(),
            json: false,
            config_path: None,
        };
        let start = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            start_detached_from(&env, &args, &mut |_| {})
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            start(&["--bogus"]),
            "error: unexpected argument '--bogus' found"
        );
        assert!(
            start(&["c.toml", "--detach"]).contains("'--detach' cannot be used multiple times")
        );
        assert!(start(&["c.toml", "--remote"]).contains("'--remote' cannot be used with"));
        assert!(start(&["missing.toml"]).starts_with("missing.toml: cannot read"));
        assert!(
            !env.db_path.exists(),
            "nothing is written for a bad request"
        );
    }
}
