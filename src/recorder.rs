//! Recording a training run of the engine in the notebook: the run row (config snapshot,
//! commit, host, seed, backend), buffered metric streams, and the outcome.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use labbook_models::config::RunConfig;
use labbook_models::train::{TrainObserver, TrainOptions, TrainSummary, train};

use crate::error::{Error, Result};
use crate::model::ItemId;
use crate::model::RunId;
use crate::store::{MetricPoint, NewRun, RunEnvironment, RunStatus, Store};

/// Metric points are written at most this often (and at the end), so a crash loses at most
/// about a second of metrics while logging stays far below 1% of step time.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the code came from, captured when the run is created.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub git_commit: Option<String>,
    /// The uncommitted changes: `git diff HEAD` and the untracked, non-ignored files as
    /// additions, capped at [`MAX_DIFF`] with a note saying what was left out.
    pub git_diff: Option<String>,
    pub host: Option<String>,
    /// labbook's build, the CPU (the GPU is added per run, for CUDA runs); `None` for runs
    /// that train elsewhere (remote requests).
    pub environment: Option<RunEnvironment>,
}

/// Largest dirty diff stored with a run; bigger diffs are cut with a note.
const MAX_DIFF: usize = 512 * 1024;

/// Largest untracked file included in the diff; larger ones are named, not included.
const MAX_UNTRACKED_FILE: usize = 64 * 1024;

impl Provenance {
    /// Reads the git commit and uncommitted diff (untracked files included) of the working
    /// directory, the host name, and this labbook's build and CPU.
    pub fn capture(dir: &Path) -> Provenance {
        let git = |args: &[&str]| crate::git::output(Some(dir), args);
        let git_commit = git(&["rev-parse", "HEAD"]).map(|s| s.trim().to_string());
        let git_diff = git_commit.as_ref().and(git(&["diff", "HEAD"])).map(|mut d| {
            let untracked = git(&["ls-files", "--others", "--exclude-standard", "-z"])
                .unwrap_or_default();
            for path in untracked.split('\0').filter(|p| !p.is_empty()) {
                d.push_str(&untracked_as_diff(dir, path));
            }
            if d.len() > MAX_DIFF {
                let left_out = d.len() - MAX_DIFF;
                let mut cut = MAX_DIFF;
                while !d.is_char_boundary(cut) {
                    cut -= 1;
                }
                d.truncate(cut);
                d.push_str(&format!(
                    "\n[diff truncated by labbook: {left_out} bytes over the {} KiB cap left out]\n",
                    MAX_DIFF / 1024
                ));
            }
            d
        });
        Provenance {
            git_commit,
            git_diff,
            host: hostname(),
            environment: Some(RunEnvironment::capture()),
        }
    }
}

/// An untracked file as a `git diff` addition; binary or large files are only named.
fn untracked_as_diff(dir: &Path, path: &str) -> String {
    let bytes = match std::fs::read(dir.join(path)) {
        Ok(b) => b,
        Err(e) => return format!("[untracked file {path}: cannot read: {e}]\n"),
    };
    if bytes.len() > MAX_UNTRACKED_FILE {
        return format!(
            "[untracked file {path} ({} bytes) not included: over {} KiB]\n",
            bytes.len(),
            MAX_UNTRACKED_FILE / 1024
        );
    }
    let Ok(text) = String::from_utf8(bytes) else {
        return format!("[untracked binary file {path} not included]\n");
    };
    if text.contains('\0') {
        return format!("[untracked binary file {path} not included]\n");
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut out = format!(
        "diff --git a/{path} b/{path}\nnew file (untracked)\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{} @@\n",
        lines.len()
    );
    for l in lines {
        out.push('+');
        out.push_str(l);
        out.push('\n');
    }
    out
}

impl RunEnvironment {
    /// This labbook's version and build commit, the CPU model and the engine's threads.
    pub fn capture() -> RunEnvironment {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        });
        RunEnvironment {
            labbook_version: env!("CARGO_PKG_VERSION").to_string(),
            labbook_commit: option_env!("LABBOOK_BUILD_COMMIT").map(str::to_string),
            cpu,
            // What the engine's thread pool (rayon) starts with.
            threads: std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|n| n.parse().ok())
                .filter(|&n: &usize| n > 0)
                .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get())),
            os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            gpu: None,
            data: None,
        }
    }
}

/// A `text` / `tokens` run's data as found now, for the run record: format, each file with
/// its size and modification time (so `compare` shows when two runs read different data),
/// and where the held-out split comes from. `None` for generated tasks, and when the files
/// are not here (a remote run reads them on the runner).
pub fn data_description(task: &labbook_models::tasks::TaskSection) -> Option<String> {
    use labbook_models::tasks::TaskKind;
    let src = task.source().filter(|_| task.kind.reads_files())?;
    let (train, valid) = labbook_models::data::stamps(src).ok()?;
    let format = match task.kind {
        TaskKind::Tokens => format!(
            "tokens {}, vocab {}",
            match task.dtype {
                Some(labbook_models::data::Dtype::U32) => "u32",
                _ => "u16",
            },
            task.vocab_size
        ),
        _ => format!(
            "text, {} tokenizer",
            match task.tokenizer.unwrap_or_default() {
                labbook_models::data::Tokenizer::Bytes => "bytes",
                labbook_models::data::Tokenizer::Chars => "chars",
            }
        ),
    };
    // Bytes per token where that is fixed (`chars` decodes a variable-width encoding).
    let width: Option<u64> = match (task.kind, task.tokenizer.unwrap_or_default()) {
        (TaskKind::Tokens, _) => task.dtype.map(|d| d.width() as u64),
        (_, labbook_models::data::Tokenizer::Bytes) => Some(1),
        _ => None,
    };
    let files = |fs: &[labbook_models::data::FileStamp]| {
        fs.iter()
            .map(|f| {
                let when = f
                    .modified
                    .map(|m| {
                        chrono::DateTime::<chrono::Utc>::from(m)
                            .format("%Y-%m-%dT%H:%M:%SZ")
                            .to_string()
                    })
                    .unwrap_or_else(|| "?".into());
                let tokens = match width {
                    Some(w) => format!(" = {} tokens", f.bytes / w),
                    None => String::new(),
                };
                format!(
                    "{} ({} bytes{tokens}, modified {when})",
                    f.path.display(),
                    f.bytes
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let held_out = if valid.is_empty() {
        format!("held out: the last {}% of it", task.val_fraction * 100.0)
    } else {
        format!("held out: {}", files(&valid))
    };
    Some(format!("{format} · {} · {held_out}", files(&train)))
}

/// GPU `index` as `nvidia-smi` describes it: name, memory, driver and CUDA versions.
/// The run's devices in words: `cpu (ndarray)`, `2 × cpu (ndarray)`, `cuda:0, cuda:1`.
pub fn device_summary(devices: &[labbook_models::backend::BackendChoice]) -> String {
    use labbook_models::backend::{BackendChoice, CPU_BACKEND_NAME};
    match devices {
        [BackendChoice::Cpu] => format!("cpu ({CPU_BACKEND_NAME})"),
        [BackendChoice::Cpu, ..] => format!("{} × cpu ({CPU_BACKEND_NAME})", devices.len()),
        _ => devices
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `nvidia-smi`'s name, memory and driver of CUDA device `index` as this process numbers it:
/// under `CUDA_VISIBLE_DEVICES` (a runner's job) device 0 is the first GPU listed there,
/// while `nvidia-smi` counts every GPU of the machine.
pub fn gpu_description(index: usize) -> Option<String> {
    let physical = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) if !list.trim().is_empty() => list.split(',').nth(index)?.trim().to_string(),
        _ => index.to_string(),
    };
    let query = std::process::Command::new("nvidia-smi")
        .args([
            &format!("--id={physical}"),
            "--query-gpu=name,memory.total,driver_version",
            "--format=csv,noheader",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let fields = String::from_utf8_lossy(&query.stdout).trim().to_string();
    let cuda = std::process::Command::new("nvidia-smi")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let at = text.find("CUDA Version:")? + "CUDA Version:".len();
            text[at..].split_whitespace().next().map(str::to_string)
        });
    Some(match cuda {
        Some(v) => format!("{fields}, CUDA {v}"),
        None => fields,
    })
}

pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::process::Command::new("hostname")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Creates run `R-n` for a validated config (nothing is written if validation fails).
pub fn create_run(
    store: &mut Store,
    cfg: &RunConfig,
    config_path: Option<&Path>,
    experiment: Option<ItemId>,
    provenance: &Provenance,
) -> Result<RunId> {
    create_run_in_sweep(store, cfg, config_path, experiment, provenance, None)
}

/// [`create_run`], recording the run as part of a sweep: `sweep` is the sweep's id and this
/// member's point of the grid (`(key, value)` overrides), which its name shows after the
/// config's (`selective-copying-mamba kind=mamba-lti`), so that `runs` tells members apart.
pub fn create_run_in_sweep(
    store: &mut Store,
    cfg: &RunConfig,
    config_path: Option<&Path>,
    experiment: Option<ItemId>,
    provenance: &Provenance,
    sweep: Option<(&str, &[(String, String)])>,
) -> Result<RunId> {
    cfg.validate().map_err(|e| Error::Invalid(e.to_string()))?;
    for d in cfg.train.device_list() {
        d.check_available()
            .map_err(|e| Error::Invalid(e.to_string()))?;
    }
    let run = new_run_in_sweep(cfg, config_path, experiment, provenance, sweep);
    store.create_run(&run)
}

/// [`new_run`] for a point of a sweep: named after the config and the point
/// (`smoke lr=0.001 seed=1`), with the sweep's id.
pub fn new_run_in_sweep(
    cfg: &RunConfig,
    config_path: Option<&Path>,
    experiment: Option<ItemId>,
    provenance: &Provenance,
    sweep: Option<(&str, &[(String, String)])>,
) -> NewRun {
    let mut run = new_run(
        cfg,
        config_path,
        experiment,
        provenance,
        sweep.map(|(id, _)| id),
    );
    if let Some((_, point)) = sweep {
        let point: Vec<String> = point
            .iter()
            .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
            .collect();
        let base = run.name.take().unwrap_or_else(|| "sweep".into());
        run.name = Some(format!("{base} {}", point.join(" ")));
    }
    run
}

/// The run row for `cfg` (config snapshot, commit, seed, backend, device, host).
pub fn new_run(
    cfg: &RunConfig,
    config_path: Option<&Path>,
    experiment: Option<ItemId>,
    provenance: &Provenance,
    sweep: Option<&str>,
) -> NewRun {
    NewRun {
        experiment,
        name: config_path
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned()),
        config: cfg.to_toml_string(),
        config_path: config_path.map(|p| p.display().to_string()),
        git_commit: provenance.git_commit.clone(),
        git_diff: provenance.git_diff.clone(),
        seed: Some(cfg.train.seed as i64),
        backend: Some(cfg.train.device_kind().to_string()),
        device: Some(device_summary(&cfg.train.device_list())),
        host: provenance.host.clone(),
        steps_total: Some(cfg.train.steps as i64),
        sweep: sweep.map(str::to_string),
        environment: provenance.environment.clone().map(|mut e| {
            let gpus: Vec<String> = cfg
                .train
                .device_list()
                .iter()
                .filter_map(|d| match d {
                    labbook_models::backend::BackendChoice::Cuda(i) => {
                        gpu_description(*i).map(|g| format!("{d}: {g}"))
                    }
                    labbook_models::backend::BackendChoice::Cpu => None,
                })
                .collect();
            if !gpus.is_empty() {
                e.gpu = Some(gpus.join("; "));
            }
            e.data = data_description(&cfg.task);
            e
        }),
    }
}

/// Progress shown to whoever runs the training (a progress bar, a TUI, nothing).
pub trait Progress {
    fn step(&mut self, _step: u64, _total: u64, _metrics: &[(String, f64)]) {}
    fn eval(&mut self, _step: u64, _metrics: &[(String, f64)]) {}
}

impl Progress for () {}

/// A [`TrainObserver`] that streams metrics into the notebook.
struct Recorder<'a> {
    store: &'a mut Store,
    run: RunId,
    started: Instant,
    buffer: Vec<MetricPoint>,
    last_flush: Instant,
    step: u64,
    progress: &'a mut dyn Progress,
    error: Option<Error>,
    /// Time spent in this observer (buffering, flushing): the cost of logging.
    spent: std::time::Duration,
    points: u64,
    flushes: u64,
}

impl Recorder<'_> {
    fn push(&mut self, step: u64, metrics: &[(String, f64)]) {
        let wall = self.started.elapsed().as_secs_f64();
        self.buffer.extend(metrics.iter().map(|(k, v)| MetricPoint {
            step: step as i64,
            key: k.clone(),
            value: *v,
            wall_time: wall,
        }));
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.flushes += 1;
        if self.buffer.is_empty() && self.error.is_none() {
            let _ = self
                .store
                .append_metrics(self.run, &[], Some(self.step as i64));
        } else if let Err(e) =
            self.store
                .append_metrics(self.run, &self.buffer, Some(self.step as i64))
        {
            // Keep the points for the next try; the run continues and reports at the end.
            tracing::warn!(run = %self.run, error = %e, "metric flush failed");
            self.error = Some(e);
            return;
        } else {
            self.error = None;
        }
        self.buffer.clear();
        self.last_flush = Instant::now();
    }
}

impl TrainObserver for Recorder<'_> {
    fn on_step(&mut self, step: u64, total: u64, metrics: &[(String, f64)]) {
        let t = Instant::now();
        self.step = step;
        self.points += metrics.len() as u64;
        self.push(step, metrics);
        self.spent += t.elapsed();
        self.progress.step(step, total, metrics);
    }

    fn on_eval(&mut self, step: u64, metrics: &[(String, f64)]) {
        let t = Instant::now();
        self.points += metrics.len() as u64;
        self.push(step, metrics);
        self.spent += t.elapsed();
        self.progress.eval(step, metrics);
    }
}

/// The outcome of [`train_run`].
#[derive(Debug, serde::Serialize)]
pub struct RunOutcome {
    pub run: RunId,
    pub status: RunStatus,
    pub steps: u64,
    pub final_metrics: BTreeMap<String, f64>,
    pub wall_time_s: f64,
    pub error: Option<String>,
    pub checkpoint: Option<PathBuf>,
    /// Seconds spent recording metrics (buffering and writing to the notebook).
    pub logging_s: f64,
    pub metric_points: u64,
    pub flushes: u64,
}

/// Trains run `run` (already created) and records everything about it in the notebook.
/// Training errors are recorded as a failed run and returned in the outcome, not as `Err`;
/// `Err` means the notebook itself could not be written.
pub fn train_run(
    store: &mut Store,
    run: RunId,
    cfg: &RunConfig,
    checkpoint_dir: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<RunOutcome> {
    train_run_resuming(store, run, cfg, checkpoint_dir, None, cancel, progress)
}

/// The directory of run `run`'s checkpoints and log: `runs/R-n/` beside the notebook.
pub fn run_dir(db_path: &Path, run: RunId) -> PathBuf {
    db_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("runs")
        .join(run.to_string())
}

/// Whether `dir` holds a checkpoint the engine can resume from.
pub fn has_checkpoint(dir: &Path) -> bool {
    dir.join("state.json").is_file() && dir.join("model.mpk").is_file()
}

/// [`train_run`], continuing from the checkpoint in `resume_from` when given.
pub fn train_run_resuming(
    store: &mut Store,
    run: RunId,
    cfg: &RunConfig,
    checkpoint_dir: &Path,
    resume_from: Option<&Path>,
    cancel: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<RunOutcome> {
    store.start_run(run, std::process::id())?;
    let beat = Heartbeat::start(store, run);
    let started = Instant::now();
    let mut rec = Recorder {
        store,
        run,
        started,
        buffer: Vec::new(),
        last_flush: Instant::now(),
        step: 0,
        progress,
        error: None,
        spent: std::time::Duration::ZERO,
        points: 0,
        flushes: 0,
    };
    let result = train(
        cfg,
        TrainOptions {
            checkpoint_dir: Some(checkpoint_dir.to_path_buf()),
            cancel,
            resume_from: resume_from.map(Path::to_path_buf),
        },
        &mut rec,
    );
    let t = Instant::now();
    rec.flush();
    rec.spent += t.elapsed();
    drop(beat);
    let (logging_s, metric_points, flushes) = (rec.spent.as_secs_f64(), rec.points, rec.flushes);
    let steps_done = rec.step;
    if let Some(e) = rec.error.take() {
        return Err(e);
    }
    let (status, metrics, error, checkpoint, steps) = match result {
        Ok(summary) => {
            let status = if summary.cancelled {
                RunStatus::Cancelled
            } else {
                RunStatus::Succeeded
            };
            let metrics = summary_metrics(&summary);
            (
                status,
                metrics,
                None,
                summary.checkpoint.clone(),
                summary.steps,
            )
        }
        Err(e) => (
            RunStatus::Failed,
            BTreeMap::new(),
            Some(e.to_string()),
            None,
            steps_done,
        ),
    };
    store.finish_run(run, status, &metrics, error.as_deref())?;
    post_summary_if_synced(store, run);
    Ok(RunOutcome {
        run,
        status,
        steps,
        final_metrics: metrics,
        wall_time_s: started.elapsed().as_secs_f64(),
        error,
        checkpoint,
        logging_s,
        metric_points,
        flushes,
    })
}

/// A finished run of an experiment that has a GitHub issue leaves one summary comment
/// (metrics, config diff, commit) on it; the next `labbook sync` posts it. Only synced
/// experiments get one, so notebooks without GitHub are not cluttered. A failure here is
/// logged and never fails the run.
pub(crate) fn post_summary_if_synced(store: &mut Store, run: RunId) {
    let synced = store
        .get_run(run)
        .ok()
        .and_then(|r| r.experiment)
        .is_some_and(|exp| store.has_issue(exp).unwrap_or(false));
    if synced && let Err(e) = crate::github::post_run_summary(store, run) {
        tracing::warn!(run = %run, error = %e, "could not add the run summary comment");
    }
}

/// Seconds between heartbeats of a training run; a run is presumed crashed after
/// [`crate::store::STALE_HEARTBEAT`] without one.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A thread with its own connection that refreshes a run's heartbeat every
/// [`HEARTBEAT_EVERY`] while training, so a long step or evaluation (no metric flush)
/// never makes a healthy run look dead. Stops when dropped.
struct Heartbeat {
    done: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(store: &Store, run: RunId) -> Heartbeat {
        use std::sync::atomic::Ordering;
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let path = store.path().to_path_buf();
        let author = store.author().to_string();
        let stop = done.clone();
        let thread = std::thread::Builder::new()
            .name(format!("heartbeat {run}"))
            .spawn(move || {
                let Ok(mut s) = Store::open(&path, author) else {
                    return;
                };
                loop {
                    let t = Instant::now();
                    while t.elapsed() < HEARTBEAT_EVERY {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    if let Err(e) = s.heartbeat(run) {
                        tracing::warn!(run = %run, error = %e, "heartbeat failed");
                    }
                }
            })
            .ok();
        Heartbeat { done, thread }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Final metrics as stored: the last values, plus `best/…` for evaluation metrics.
fn summary_metrics(s: &TrainSummary) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = s.final_metrics.iter().cloned().collect();
    for (k, v) in &s.best_metrics {
        m.insert(format!("best/{k}"), *v);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_thread_beats_without_metric_flushes() {
        let (_d, mut s) = crate::store::test_util::temp_store();
        let run = s
            .create_run(&NewRun {
                config: String::new(),
                ..Default::default()
            })
            .unwrap();
        s.start_run(run, std::process::id()).unwrap();
        let old = "2000-01-01T00:00:00.000Z";
        s.conn()
            .execute("UPDATE runs SET heartbeat_at = ?1", [old])
            .unwrap();
        let beat = Heartbeat::start(&s, run);
        // Poll rather than sleep a fixed time: a loaded machine may run the thread late.
        let deadline = std::time::Instant::now() + HEARTBEAT_EVERY * 10;
        let mut r = s.get_run(run).unwrap();
        while r.heartbeat_at.as_deref().unwrap() == old && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            r = s.get_run(run).unwrap();
        }
        drop(beat);
        assert!(r.heartbeat_at.as_deref().unwrap() > old, "{r:?}");
        assert!(s.reap_crashed().unwrap().is_empty());
    }
}
