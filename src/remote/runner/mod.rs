//! `labbook runner`: the GPU machine's side of remote runs.
//!
//! Poll open `run-request` issues → skip authors not on the allow-list (one polite
//! comment) → claim (post a claim comment with a nonce and a lease, re-read, the earliest
//! live claim wins, a loser withdraws) → check that the commit is in the repo (API) →
//! fetch it into `WORKDIR/repo.git`, check it out as a detached worktree → build → run the
//! config with that build's `labbook run` into a notebook of its own → post one results
//! comment (idempotent), label `done`/`failed`, close.
//!
//! While a job runs, its claim comment doubles as the status comment: it is edited every
//! `min(lease / 3, status_every)` with a new `lease_until` and the current step and
//! metrics. A runner that cannot renew before its lease ends kills its run and gives the
//! request up; a runner that dies simply stops renewing, and the request is free again once
//! the lease has passed.
//!
//! Git, the build and the training run are child processes owned by one worker thread per
//! job (so `PR_SET_PDEATHSIG` kills them if the runner dies); the GitHub side is async, so a
//! long build or step never delays a lease renewal.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::job_process::{job_command, read_tail, run_logged};
use super::protocol::{
    self, Claim, ClaimState, CurvePoint, KIND_CLAIM, KIND_NOT_ALLOWED, KIND_REFUSED, KIND_REQUEST,
    KIND_RESULTS, LABEL_DONE, LABEL_FAILED, LABEL_REQUEST, Results, RunRequest, accepted_results,
    hidden_block, parse_block, winning_claim,
};
use super::request::{Listed, list_comments};
use crate::config::GithubConfig;
use crate::error::{Error, Result};
use crate::github::Token;
use crate::github::client::{Client, Sent};
use crate::github::issue::{Issue, own_login, parse_issues};
use crate::store::{RunStatus, stamp};
use labbook_models::backend::BackendChoice;

/// Everything `labbook runner` needs besides the GitHub config and token.
#[derive(Clone)]
pub struct RunnerOptions {
    pub workdir: PathBuf,
    /// The backend this machine offers: `cuda` runners take CUDA and CPU requests, `cpu`
    /// runners only CPU ones.
    pub backend: BackendChoice,
    /// The GPUs this runner hands out (`--gpus 0,1,2,3`): each CUDA job gets as many as it
    /// asks for, as `CUDA_VISIBLE_DEVICES`, and waits while they are not free. Empty: no
    /// placement (jobs see every GPU).
    pub gpus: Vec<usize>,
    /// `Some`: the training step goes to Slurm (`[runner] executor = "slurm"`).
    pub slurm: Option<SlurmOptions>,
    pub parallel: usize,
    pub poll: Duration,
    pub once: bool,
    /// GitHub logins whose requests run.
    pub allow: Vec<String>,
    pub clone_url: String,
    /// Build command; `None`: `cargo build --release [--features cuda]`.
    pub build: Option<Vec<String>>,
    /// The labbook binary that runs configs; `None`: the build's `target/release/labbook`.
    pub bin: Option<PathBuf>,
    pub lease: Duration,
    pub status_every: Duration,
    /// Shown in claims and results.
    pub name: String,
    /// `[github] runners`: when set, claims and results from other logins are ignored.
    pub runners: Vec<String>,
    /// Variables passed to jobs beyond the allow-list (`[runner] env`).
    pub env: Vec<String>,
    /// A job (fetch, build and run) running longer is stopped and reported failed.
    pub max_job_time: Option<Duration>,
    /// Prepended to the build and the job commands (`[runner] wrap`).
    pub wrap: Vec<String>,
    /// Largest job log kept on disk, in bytes (its start and its end are kept).
    pub max_log: u64,
    /// Set to stop: running jobs are killed and their requests given back.
    pub stop: Arc<AtomicBool>,
    /// One line per thing that happened (never the token).
    pub events: Arc<dyn Fn(&str) + Send + Sync>,
}

/// What a runner did before it stopped.
#[derive(Debug, Default, Serialize)]
pub struct RunnerReport {
    /// Requests run to the end: (issue, run status).
    pub ran: Vec<(u64, String)>,
    /// Requests refused because their author is not allowed.
    pub refused: Vec<u64>,
    /// Requests given up (lease lost, runner stopped, GitHub unreachable).
    pub given_up: Vec<(u64, String)>,
}

/// A request this runner won.
struct Won {
    issue: u64,
    request: RunRequest,
    claim_id: u64,
    nonce: String,
    /// The lease on GitHub's clock, for the claim's text.
    lease_until: DateTime<Utc>,
    /// When the claim was sent, on this machine's monotonic clock: the lease is trusted
    /// until `sent + lease - margin`, whatever the wall clocks say.
    sent: Instant,
    /// GitHub's `created_at` of the claim comment: renewals list only comments changed
    /// since (a rival's live claim is renewed, so it shows up there).
    claimed_at: Option<String>,
    /// GitHub's clock less this machine's, for the lease text of renewals.
    skew: chrono::TimeDelta,
    /// The GPUs handed to the job (machine numbering); empty without `--gpus`.
    gpus: Vec<usize>,
}

/// A timestamp as GitHub writes them (whole seconds), for `since=`.
fn github_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Process-wide: fetching into the shared bare repo and building into the shared target
/// directory happen one job at a time (git and cargo locks, and a binary being replaced
/// while another job copies it).
static REPO_LOCK: Mutex<()> = Mutex::new(());

pub fn run_runner(gh: &GithubConfig, token: &Token, opts: RunnerOptions) -> Result<RunnerReport> {
    crate::github::sync::check_repo(&gh.repo)?;
    if opts.allow.is_empty() {
        return Err(Error::Invalid(
            "[runner] allow is empty: no one's requests would run; list the GitHub logins to trust (see docs/remote-runs.md)".into(),
        ));
    }
    std::fs::create_dir_all(&opts.workdir).map_err(|e| Error::io(&opts.workdir, e))?;
    // Refused now rather than at the first job: with Slurm, the compute nodes write here too.
    let probe = opts.workdir.join(".labbook-runner-probe");
    std::fs::write(&probe, b"probe")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            Error::Invalid(format!(
                "workdir {} is not writable ({e}); the runner keeps checkouts, builds and job notebooks there",
                opts.workdir.display()
            ))
        })?;
    #[cfg(target_os = "linux")]
    {
        // Jobs run as this user and could otherwise read the token from
        // /proc/<runner pid>/environ (or ptrace the runner). Not dumpable: those files
        // belong to root. Reset by execve, so git, the build and the run are unaffected.
        // SAFETY: prctl(PR_SET_DUMPABLE) only changes a flag of this process.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            (opts.events)(&format!(
                "warning: cannot make the runner non-dumpable ({}); jobs may read its environment",
                std::io::Error::last_os_error()
            ));
        }
    }
    let opts = Arc::new(opts);
    let rt = crate::github::client::runtime()?;
    rt.block_on(async {
        let mut client = Client::new(gh, token)?;
        // Our own results are found (and edited, never duplicated) by this login.
        let me: Arc<str> = own_login(&mut client).await?.into();
        let mut report = RunnerReport::default();
        let mut jobs: Vec<(u64, tokio::task::JoinHandle<Result<JobEnd>>)> = Vec::new();
        // `--gpus` not yet handed to a job, and those each running job holds.
        let mut free_gpus: Vec<usize> = opts.gpus.clone();
        let mut held: Vec<(u64, Vec<usize>)> = Vec::new();
        let mut last_poll: Option<Instant> = None;
        let mut refused_seen: HashSet<u64> = HashSet::new();
        // `--once` looks again only when a slot has freed up, not on every tick.
        let mut slot_freed = false;
        loop {
            let mut i = 0;
            while i < jobs.len() {
                if jobs[i].1.is_finished() {
                    slot_freed = true;
                    let (n, h) = jobs.remove(i);
                    if let Some(at) = held.iter().position(|(j, _)| *j == n) {
                        free_gpus.extend(held.remove(at).1);
                        free_gpus.sort_unstable();
                    }
                    match h.await {
                        Ok(Ok(JobEnd::Ran(status))) => {
                            (opts.events)(&format!("#{n}: {status}; results posted"));
                            report.ran.push((n, status));
                        }
                        Ok(Ok(JobEnd::GivenUp(why))) | Ok(Err(Error::Github(why))) => {
                            (opts.events)(&format!("#{n}: given up: {why}"));
                            report.given_up.push((n, why));
                        }
                        Ok(Err(e)) => {
                            (opts.events)(&format!("#{n}: given up: {e}"));
                            report.given_up.push((n, e.to_string()));
                        }
                        Err(e) => report.given_up.push((n, format!("job panicked: {e}"))),
                    }
                } else {
                    i += 1;
                }
            }
            let stopping = opts.stop.load(Ordering::SeqCst);
            if stopping && jobs.is_empty() {
                break;
            }
            let due = match last_poll {
                None => true,
                Some(_) if opts.once => slot_freed,
                Some(t) => t.elapsed() >= opts.poll,
            };
            if !stopping && due && jobs.len() < opts.parallel {
                last_poll = Some(Instant::now());
                slot_freed = false;
                let busy: HashSet<u64> = jobs.iter().map(|(n, _)| *n).collect();
                let free = opts.parallel - jobs.len();
                let gpus = (!opts.gpus.is_empty()).then_some(free_gpus.len());
                let won = match poll(&mut client, gh, &opts, &busy, (free, gpus), &mut report).await
                {
                    Ok(w) => w,
                    Err(e) if opts.once => return Err(e),
                    Err(e) => {
                        (opts.events)(&format!("poll failed (will retry): {e}"));
                        Vec::new()
                    }
                };
                for n in &report.refused {
                    if refused_seen.insert(*n) {
                        (opts.events)(&format!("#{n}: author not on the allow-list; refused"));
                    }
                }
                if opts.once && won.is_empty() && jobs.is_empty() {
                    break;
                }
                for mut w in won {
                    if !opts.gpus.is_empty() {
                        // `poll` claimed no more than are free.
                        let need = w.request.gpus_needed().min(free_gpus.len());
                        w.gpus = free_gpus.drain(..need).collect();
                        held.push((w.issue, w.gpus.clone()));
                    }
                    (opts.events)(&format!(
                        "#{}: claimed ({} at {}, backend {}{})",
                        w.issue,
                        w.request.run,
                        &w.request.commit[..w.request.commit.len().min(12)],
                        w.request.backend,
                        gpu_note(&w.gpus)
                    ));
                    let job_client = Client::new(gh, token)?;
                    let n = w.issue;
                    let o = opts.clone();
                    let repo = gh.repo.clone();
                    jobs.push((n, tokio::spawn(run_job(job_client, repo, o, me.clone(), w))));
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(report)
    })
}

/// `", GPUs 0,1"` for a job holding GPUs, else nothing.
fn gpu_note(gpus: &[usize]) -> String {
    if gpus.is_empty() {
        return String::new();
    }
    let list: Vec<String> = gpus.iter().map(ToString::to_string).collect();
    format!(
        ", GPU{} {}",
        if gpus.len() > 1 { "s" } else { "" },
        list.join(",")
    )
}

/// Lists open requests and claims up to `free` of them, and (with `--gpus`) only those
/// whose GPUs fit in the free ones: a request asking for more waits for a later poll.
async fn poll(
    client: &mut Client,
    gh: &GithubConfig,
    opts: &RunnerOptions,
    busy: &HashSet<u64>,
    (free, mut free_gpus): (usize, Option<usize>),
    report: &mut RunnerReport,
) -> Result<Vec<Won>> {
    let issues = open_requests(client, &gh.repo).await?;
    let mut won = Vec::new();
    for issue in issues {
        if won.len() >= free {
            break;
        }
        if issue.pull_request.is_some() || busy.contains(&(issue.number as u64)) {
            continue;
        }
        match consider(client, gh, opts, &issue, free_gpus, report).await {
            Ok(Some(w)) => {
                if let Some(f) = free_gpus.as_mut() {
                    *f -= w.request.gpus_needed().min(*f);
                }
                won.push(w)
            }
            Ok(None) => {}
            Err(e) => (opts.events)(&format!("#{}: skipped: {e}", issue.number)),
        }
    }
    Ok(won)
}

/// The open `run-request` issues, oldest first.
async fn open_requests(client: &mut Client, repo: &str) -> Result<Vec<Issue>> {
    client
        .get_all(
            &format!("/repos/{repo}/issues?state=open&labels={LABEL_REQUEST}&sort=created&direction=asc&per_page=100"),
            parse_issues,
        )
        .await
}

/// `runner --executor slurm --dry-run`: the job script for the first open request this
/// runner would take (allowed author, a backend it offers, nobody's live claim), with the
/// paths a job would use. Reads GitHub only: nothing is claimed or submitted.
pub fn dry_run(
    gh: &GithubConfig,
    token: &Token,
    opts: RunnerOptions,
) -> Result<Option<(u64, String)>> {
    let slurm = opts.slurm.clone().ok_or_else(|| {
        Error::Invalid("--dry-run shows the Slurm executor's job script; it is not set".into())
    })?;
    crate::github::sync::check_repo(&gh.repo)?;
    let rt = crate::github::client::runtime()?;
    rt.block_on(async {
        let mut client = Client::new(gh, token)?;
        let repo = &gh.repo;
        let issues = open_requests(&mut client, repo).await?;
        for issue in issues {
            let n = issue.number as u64;
            let Some(req) = issue
                .body
                .as_deref()
                .and_then(|b| parse_block::<RunRequest>(KIND_REQUEST, b))
            else {
                continue;
            };
            let author = issue.user.as_ref().map_or("", |u| u.login.as_str());
            if issue.pull_request.is_some()
                || !allowed(&opts, author)
                || !accepts(opts.backend, &req.backend)
            {
                continue;
            }
            let listed = list_comments(&mut client, repo, n, None, &opts.runners).await?;
            if winning_claim(&listed.comments, listed.now).is_some()
                || accepted_results(&listed.comments).is_some()
            {
                continue;
            }
            let job = job_dir(&opts, n);
            let checkout = opts.workdir.join("checkouts").join(format!("issue-{n}"));
            let bin = match &opts.bin {
                Some(b) if b.is_absolute() => b.clone(),
                Some(b) => checkout.join(b),
                None => job.join("labbook"),
            };
            let p = |p: &Path| p.display().to_string();
            let argv = vec![
                p(&bin),
                "--db".into(),
                p(&job.join("tracker.db")),
                "--config".into(),
                p(&job.join("labbook.toml")),
                "run".into(),
                p(&job.join("config.toml")),
            ];
            let script = slurm::job_script(
                &opts,
                &slurm,
                (n, req.gpus_needed()),
                &argv,
                &job,
                &checkout,
            );
            return Ok(Some((n, script)));
        }
        Ok(None)
    })
}

fn accepts(runner: BackendChoice, requested: &str) -> bool {
    matches!(
        (runner, requested.parse::<BackendChoice>()),
        (_, Ok(BackendChoice::Cpu)) | (BackendChoice::Cuda(_), Ok(BackendChoice::Cuda(_)))
    )
}

fn allowed(opts: &RunnerOptions, login: &str) -> bool {
    opts.allow.iter().any(|a| a.eq_ignore_ascii_case(login))
}

mod artifacts;
mod claim;
mod job;
mod job_notebook;
pub mod slurm;
mod work;
use artifacts::*;
use claim::*;
use job::*;
use job_notebook::*;
pub use slurm::SlurmOptions;
use work::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_a_runner_takes() {
        assert!(accepts(BackendChoice::Cpu, "cpu"));
        assert!(!accepts(BackendChoice::Cpu, "cuda"));
        assert!(accepts(BackendChoice::Cuda(0), "cuda:1"));
        assert!(accepts(BackendChoice::Cuda(0), "cpu"));
        assert!(!accepts(BackendChoice::Cuda(0), "tpu"));
    }

    #[test]
    fn clone_url_credentials_never_reach_a_comment() {
        let url = "https://bob:ghp_s3cretTOKEN@git.example.com/lab/notebook.git";
        let log = format!(
            "fatal: unable to access '{url}/': Could not resolve host\n\
             remote: Invalid username or password ghp_s3cretTOKEN\n\
             see http://user:pw@mirror.example.com:8080/x and ssh://git@github.com/lab/n.git\n\
             `git -C /w/repo.git fetch {url} +refs/heads/*:refs/remotes/origin/*` failed"
        );
        let clean = scrub(&log, url);
        assert!(
            !clean.contains("s3cret") && !clean.contains("bob:"),
            "{clean}"
        );
        assert!(!clean.contains("user:pw"), "{clean}");
        assert!(
            clean.contains("'https://git.example.com/lab/notebook.git/'"),
            "{clean}"
        );
        assert!(
            clean.contains("http://mirror.example.com:8080/x"),
            "{clean}"
        );
        assert!(clean.contains("ssh://github.com/lab/n.git"), "{clean}");
        assert!(clean.contains("password ***"), "{clean}");
        // Nothing to do without credentials.
        let plain = "commit abc is not on any branch of /tmp/origin.git";
        assert_eq!(scrub(plain, "/tmp/origin.git"), plain);
    }

    #[test]
    fn a_panicking_job_becomes_a_failed_one() {
        let failed = |why: String| Work {
            results: Results {
                v: 2,
                runner: "r".into(),
                nonce: None,
                status: "failed".into(),
                error: Some(why),
                commit: String::new(),
                backend: "cpu".into(),
                host: None,
                device: None,
                started_at: None,
                finished_at: None,
                wall_time_s: 0.0,
                steps_done: 0,
                steps_total: None,
                final_metrics: Default::default(),
                curves: Default::default(),
                points: Default::default(),
                resumed_from: None,
                weights: None,
                weights_error: None,
                slurm: None,
            },
            log_tail: None,
            asset: None,
        };
        let w = guarded(|| panic!("index out of bounds"), failed);
        assert_eq!(w.results.status, "failed");
        let err = w.results.error.unwrap();
        assert!(
            err.contains("panicked") && err.contains("index out of bounds"),
            "{err}"
        );
        let ok = guarded(
            || {
                let mut w = failed("x".into());
                w.results.status = "succeeded".into();
                w
            },
            failed,
        );
        assert_eq!(ok.results.status, "succeeded");
    }
}
