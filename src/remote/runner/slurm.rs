//! The Slurm executor (`[runner] executor = "slurm"`): the runner fetches and builds as
//! always, then submits the training step with `sbatch` instead of running it, follows the
//! job with `squeue` (then `sacct`, then `scontrol show job` where accounting is off), and
//! cancels it with `scancel` when the job must stop. The job script is written into the job
//! directory and kept; the job's notebook, log and checkpoints live there too, so the
//! directory must be on a filesystem the compute nodes share.
//!
//! Every Slurm command runs with the job environment (cleared, plus the allow-list and
//! `[runner] env`, e.g. `SLURM_CONF`): `sbatch` hands its environment to the job, and the
//! runner's token must not go with it.
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::RunnerOptions;
use super::job::{Shared, lock};
use crate::remote::job_process::job_command;
use crate::remote::protocol::RunRequest;

/// `[runner.slurm]` with its `poll` parsed.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub settings: crate::config::SlurmConfig,
    /// How often the job's state is read.
    pub poll: Duration,
}

/// A job as Slurm reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlurmJob {
    pub job_id: u64,
    /// `PENDING`, `RUNNING`, `COMPLETED`, `TIMEOUT`, …
    pub state: String,
    /// Why it is pending, or why it ended (`Resources`, `TimeLimit`, `NonZeroExitCode`).
    pub reason: Option<String>,
    pub node: Option<String>,
    /// Slurm's elapsed time (`[D-]HH:MM:SS`).
    pub elapsed: Option<String>,
    /// The batch script's exit code.
    pub exit_code: Option<i32>,
}

impl SlurmJob {
    /// Still queued or running (or on its way to one of those).
    pub fn is_live(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
        )
    }

    /// "Slurm job 12: PENDING (Resources)", "Slurm job 12: RUNNING on node-3".
    pub fn describe(&self) -> String {
        let mut s = format!("Slurm job {}: {}", self.job_id, self.state);
        if self.state == "RUNNING" {
            if let Some(n) = &self.node {
                s.push_str(&format!(" on {n}"));
            }
        } else if let Some(r) = self.reason.as_deref().filter(|r| *r != "None") {
            s.push_str(&format!(" ({r})"));
        }
        s
    }

    /// Why Slurm ended the job, when it was not the job's own doing: a time limit,
    /// preemption, a node failure, running out of memory, a cancellation.
    pub fn killed_by_slurm(&self) -> Option<String> {
        let what = match self.state.as_str() {
            "TIMEOUT" => "the time limit",
            "PREEMPTED" => "preemption",
            "NODE_FAIL" => "a node failure",
            "OUT_OF_MEMORY" => "running out of memory",
            "BOOT_FAIL" => "a node that failed to boot",
            "DEADLINE" => "its deadline",
            "CANCELLED" => "a cancellation",
            _ => return None,
        };
        Some(format!(
            "Slurm ended job {} ({}: {what}{})",
            self.job_id,
            self.state,
            self.reason
                .as_deref()
                .filter(|r| *r != "None")
                .map(|r| format!(", reason {r}"))
                .unwrap_or_default()
        ))
    }
}

/// `'…'` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script that runs `argv` (the training command) for request `n`.
pub fn job_script(
    opts: &RunnerOptions,
    options: &SlurmOptions,
    (n, gpus): (u64, usize),
    argv: &[String],
    job: &Path,
    checkout: &Path,
) -> String {
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name=labbook-{n}"),
        format!(
            "#SBATCH --output={}",
            shell_quote(&job.join("slurm-%j.out").display().to_string())
        ),
        format!(
            "#SBATCH --chdir={}",
            shell_quote(&checkout.display().to_string())
        ),
    ];
    let slurm = &options.settings;
    let time = slurm.time.clone().or_else(|| {
        opts.max_job_time
            .map(|d| d.as_secs().div_ceil(60).max(1).to_string())
    });
    for (key, v) in [
        ("partition", &slurm.partition),
        ("account", &slurm.account),
        ("qos", &slurm.qos),
        ("time", &time),
    ] {
        if let Some(v) = v {
            lines.push(format!("#SBATCH --{key}={}", shell_quote(v)));
        }
    }
    let gpus = slurm.gpus_per_job.map(|g| g as usize).unwrap_or(gpus);
    if gpus > 0 {
        lines.push(format!("#SBATCH --gres=gpu:{gpus}"));
        if let Some(c) = slurm.cpus_per_gpu {
            lines.push(format!("#SBATCH --cpus-per-gpu={c}"));
        }
    }
    if let Some(m) = &slurm.mem {
        lines.push(format!("#SBATCH --mem={}", shell_quote(m)));
    }
    for a in &slurm.sbatch_args {
        lines.push(format!("#SBATCH {}", a.trim()));
    }
    lines.push(String::new());
    lines
        .push("# Written by labbook runner; the job's notebook, log and checkpoints are in".into());
    lines.push(format!(
        "# {} (on a filesystem the nodes share).",
        job.display()
    ));
    let cmd: Vec<String> = super::work::wrapped(opts, argv)
        .iter()
        .map(|a| shell_quote(a))
        .collect();
    lines.push(format!("exec {}", cmd.join(" ")));
    lines.push(String::new());
    lines.join("\n")
}

/// Output of a Slurm command run with the job environment, or why it failed.
fn slurm_cmd(opts: &RunnerOptions, prog: &str, args: &[&str]) -> Result<String, String> {
    let out = job_command(prog, &opts.env)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {prog}: {e} (is Slurm installed here?)"))?;
    if !out.status.success() {
        return Err(format!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Submits `script`; returns the job id.
pub fn submit(opts: &RunnerOptions, script: &Path) -> Result<u64, String> {
    let out = slurm_cmd(
        opts,
        "sbatch",
        &["--parsable", &script.display().to_string()],
    )?;
    // `--parsable`: "123" or "123;cluster".
    out.trim()
        .split(';')
        .next()
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| format!("sbatch answered {:?}, not a job id", out.trim()))
}

/// The job's state: `squeue` while Slurm holds it, then `sacct`, then `scontrol show job`
/// (clusters without accounting keep finished jobs there for `MinJobAge`).
pub fn query(opts: &RunnerOptions, id: u64) -> Option<SlurmJob> {
    let id_s = id.to_string();
    if let Ok(out) = slurm_cmd(opts, "squeue", &["-h", "-j", &id_s, "-o", "%T|%r|%N|%M"])
        && let Some(line) = out.lines().find(|l| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.trim().split('|').collect();
        let some = |i: usize| {
            f.get(i)
                .map(|s| s.trim())
                .filter(|s| !s.is_empty() && *s != "(null)")
                .map(str::to_string)
        };
        return Some(SlurmJob {
            job_id: id,
            state: f[0].to_string(),
            reason: some(1),
            node: some(2),
            elapsed: some(3),
            exit_code: None,
        });
    }
    if let Ok(out) = slurm_cmd(
        opts,
        "sacct",
        &[
            "-n",
            "-P",
            "-X",
            "-j",
            &id_s,
            "-o",
            "State,Reason,NodeList,Elapsed,ExitCode",
        ],
    ) && let Some(line) = out.lines().find(|l| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.trim().split('|').collect();
        let some = |i: usize| {
            f.get(i)
                .map(|s| s.trim())
                .filter(|s| !s.is_empty() && *s != "None assigned")
                .map(str::to_string)
        };
        return Some(SlurmJob {
            job_id: id,
            // "CANCELLED by 0" → CANCELLED.
            state: f[0].split_whitespace().next().unwrap_or("").to_string(),
            reason: some(1),
            node: some(2),
            elapsed: some(3),
            exit_code: some(4).and_then(|c| c.split(':').next()?.parse().ok()),
        });
    }
    let out = slurm_cmd(opts, "scontrol", &["show", "job", "-o", &id_s]).ok()?;
    let field = |key: &str| {
        out.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .filter(|v| !v.is_empty() && *v != "(null)")
            .map(str::to_string)
    };
    Some(SlurmJob {
        job_id: id,
        state: field("JobState")?,
        reason: field("Reason"),
        node: field("NodeList"),
        elapsed: field("RunTime"),
        exit_code: field("ExitCode").and_then(|c| c.split(':').next()?.parse().ok()),
    })
}

/// `scancel` (best effort: a job that already ended is fine).
pub fn cancel(opts: &RunnerOptions, id: u64) {
    let _ = slurm_cmd(opts, "scancel", &[&id.to_string()]);
}

/// The job directory's record of its Slurm job, for a restarted runner to find it again.
const MARKER: &str = "slurm.json";

/// Records job `id` as this attempt's (commit and config of `req`).
pub fn remember(job: &Path, req: &RunRequest, id: u64) -> std::io::Result<()> {
    let v = json!({ "job_id": id, "commit": req.commit, "config": req.config });
    std::fs::write(job.join(MARKER), v.to_string())
}

/// The job this directory's attempt at `req` submitted, while Slurm runs it or after it
/// completed: a restarted runner re-attaches to it (following it, or collecting what it
/// left) instead of submitting another.
pub fn known_job(opts: &RunnerOptions, job: &Path, req: &RunRequest) -> Option<SlurmJob> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job.join(MARKER)).ok()?).ok()?;
    if v["commit"] != req.commit.as_str() || v["config"] != req.config.as_str() {
        return None;
    }
    // A job that ended any other way (cancelled when the runner stopped, failed) is run
    // again instead, from its checkpoint when it left one.
    query(opts, v["job_id"].as_u64()?).filter(|j| j.is_live() || j.state == "COMPLETED")
}

/// How long a cancelled job has to leave Slurm's queue before the runner stops waiting.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

/// Follows job `id` until it ends, keeping `shared`'s status line current; `kill` →
/// `scancel`. Returns its last known state.
pub(super) fn follow(
    opts: &RunnerOptions,
    slurm: &SlurmOptions,
    id: u64,
    shared: &Mutex<Shared>,
    kill: &AtomicBool,
) -> SlurmJob {
    let mut last = SlurmJob {
        job_id: id,
        state: "PENDING".into(),
        reason: None,
        node: None,
        elapsed: None,
        exit_code: None,
    };
    let mut cancelled_at: Option<Instant> = None;
    // A job that vanishes from every view (purged before it was seen to end) is given up on
    // after a few polls rather than followed forever.
    let mut unseen = 0;
    loop {
        match query(opts, id) {
            Some(j) => {
                unseen = 0;
                last = j;
            }
            None => unseen += 1,
        }
        {
            let mut s = lock(shared);
            s.slurm = Some(last.describe());
            if last.state == "RUNNING" {
                s.phase = "training".into();
            }
        }
        if (!last.is_live() && unseen == 0) || unseen > 5 {
            return last;
        }
        if kill.load(Ordering::SeqCst) {
            match cancelled_at {
                None => {
                    cancel(opts, id);
                    cancelled_at = Some(Instant::now());
                }
                Some(t) if t.elapsed() > CANCEL_WAIT => return last,
                Some(_) => {}
            }
        }
        std::thread::sleep(slurm.poll);
    }
}
