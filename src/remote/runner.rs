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
                let won = match poll(&mut client, gh, &opts, &busy, free, &mut report).await {
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
                for w in won {
                    (opts.events)(&format!(
                        "#{}: claimed ({} at {}, backend {})",
                        w.issue,
                        w.request.run,
                        &w.request.commit[..w.request.commit.len().min(12)],
                        w.request.backend
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

/// Lists open requests and claims up to `free` of them.
async fn poll(
    client: &mut Client,
    gh: &GithubConfig,
    opts: &RunnerOptions,
    busy: &HashSet<u64>,
    free: usize,
    report: &mut RunnerReport,
) -> Result<Vec<Won>> {
    let repo = &gh.repo;
    let mut issues: Vec<Issue> = Vec::new();
    let mut next = Some(format!(
        "/repos/{repo}/issues?state=open&labels={LABEL_REQUEST}&sort=created&direction=asc&per_page=100"
    ));
    while let Some(path) = next.take() {
        let resp = client.get(&path, None).await?;
        issues.extend(parse_issues(&resp.body)?);
        next = resp.next_link().map(|l| client.relative(&l));
    }
    let mut won = Vec::new();
    for issue in issues {
        if won.len() >= free {
            break;
        }
        if issue.pull_request.is_some() || busy.contains(&(issue.number as u64)) {
            continue;
        }
        match consider(client, gh, opts, &issue, report).await {
            Ok(Some(w)) => won.push(w),
            Ok(None) => {}
            Err(e) => (opts.events)(&format!("#{}: skipped: {e}", issue.number)),
        }
    }
    Ok(won)
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

/// Why request `n` must not run because of who last edited it, if so: its body was last
/// edited by someone who is neither its author nor on the allow-list (GraphQL's
/// `Issue.editor` / `lastEditedAt`; the REST API does not say who edited an issue).
async fn edit_refused(
    client: &mut Client,
    gh: &GithubConfig,
    opts: &RunnerOptions,
    n: u64,
    author: &str,
) -> Result<Option<String>> {
    let (owner, name) = gh.repo.split_once('/').unwrap_or((&gh.repo, ""));
    let data = client
        .graphql(
            "query($owner: String!, $name: String!, $number: Int!) { repository(owner: $owner, name: $name) { issue(number: $number) { author { login } lastEditedAt editor { login } } } }",
            json!({ "owner": owner, "name": name, "number": n }),
        )
        .await?;
    let issue = &data["repository"]["issue"];
    if issue.is_null() {
        return Ok(Some(format!("GitHub did not describe issue #{n}")));
    }
    let Some(editor) = issue["editor"]["login"].as_str() else {
        if issue["lastEditedAt"].is_null() {
            return Ok(None); // never edited
        }
        // Edited by a deleted account ("ghost"): nobody can vouch for the text.
        return Ok(Some(
            "its text was edited by an account that no longer exists".into(),
        ));
    };
    if editor.eq_ignore_ascii_case(author) || allowed(opts, editor) {
        return Ok(None);
    }
    Ok(Some(format!(
        "its text was last edited by @{} (at {}), who is neither its author nor on this runner's allow-list; the author can file it again",
        crate::sanitize::untrusted_line(editor),
        crate::sanitize::untrusted_line(issue["lastEditedAt"].as_str().unwrap_or("?"))
    )))
}

fn claim_body(opts: &RunnerOptions, claim: &Claim, status: &str) -> String {
    let head = match claim.state {
        ClaimState::Active => format!(
            "Claimed by runner `{}` (lease until {}).",
            opts.name, claim.lease_until
        ),
        ClaimState::Withdrawn => format!(
            "Claim withdrawn by runner `{}` (another runner was first, or it stopped).",
            opts.name
        ),
        ClaimState::Finished => format!("Run by runner `{}`.", opts.name),
    };
    format!(
        "{head}\n\nStatus: {status}\n\n_updated {}_\n\n{}",
        Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
        hidden_block(KIND_CLAIM, claim)
    )
}

/// Decides about one open request; claims it when it is ours to run.
async fn consider(
    client: &mut Client,
    gh: &GithubConfig,
    opts: &RunnerOptions,
    issue: &Issue,
    report: &mut RunnerReport,
) -> Result<Option<Won>> {
    let repo = gh.repo.as_str();
    let n = issue.number as u64;
    let Some(request) = issue
        .body
        .as_deref()
        .and_then(|b| parse_block::<RunRequest>(KIND_REQUEST, b))
    else {
        return Ok(None);
    };
    let listed = list_comments(client, repo, n, None, &opts.runners).await?;
    let comments = &listed.comments;
    if let Some((_, results)) = accepted_results(comments) {
        // Results are there but the issue is still open: a runner died between posting
        // them and closing. Finish the job for it.
        close_issue(client, repo, n, results.status == "succeeded").await?;
        return Ok(None);
    }
    let author = issue.user.as_ref().map_or("", |u| u.login.as_str());
    if !allowed(opts, author) {
        if !comments
            .iter()
            .any(|c| protocol::has_block(KIND_NOT_ALLOWED, &c.body))
        {
            let body = format!(
                "Hi @{author}, thanks for the request! This runner only runs requests from people on its allow-list, so it will not run this one. If you should be on it, ask the owner of the GPU machine to add your GitHub login to `[runner] allow`.\n\n{}",
                hidden_block(KIND_NOT_ALLOWED, &json!({ "runner": opts.name }))
            );
            // One attempt: an uncertain POST is not retried (no second comment).
            let _ = client
                .post(
                    &format!("/repos/{repo}/issues/{n}/comments"),
                    &json!({ "body": body }),
                )
                .await?;
        }
        if !report.refused.contains(&n) {
            report.refused.push(n);
        }
        return Ok(None);
    }
    if !accepts(opts.backend, &request.backend) {
        return Ok(None);
    }
    if winning_claim(comments, listed.now).is_some() {
        return Ok(None); // someone holds it
    }
    if issue
        .labels
        .iter()
        .any(|l| l.name == LABEL_DONE || l.name == LABEL_FAILED)
    {
        return Ok(None);
    }
    // The body was read above; an edit by someone the allow-list does not name (a hidden
    // block at the end does not show on GitHub's page) makes it someone else's request.
    if let Some(why) = edit_refused(client, gh, opts, n, author).await? {
        let block = hidden_block(KIND_REFUSED, &json!({ "runner": opts.name, "why": why }));
        if !comments.iter().any(|c| c.body.contains(&block)) {
            let body = format!("This runner will not run this request: {why}.\n\n{block}");
            let _ = client
                .post(
                    &format!("/repos/{repo}/issues/{n}/comments"),
                    &json!({ "body": body }),
                )
                .await?;
        }
        (opts.events)(&format!("#{n}: refused: {why}"));
        if !report.refused.contains(&n) {
            report.refused.push(n);
        }
        return Ok(None);
    }
    // Claim: post, re-read, the earliest live claim wins.
    let nonce = protocol::nonce();
    let sent = Instant::now();
    let lease_until = listed.now + lease_delta(opts.lease);
    let mut claim = Claim {
        runner: opts.name.clone(),
        nonce: nonce.clone(),
        lease_until: stamp(lease_until),
        state: ClaimState::Active,
        lease_secs: Some(opts.lease.as_secs().max(1)),
    };
    let path = format!("/repos/{repo}/issues/{n}/comments");
    let posted = client
        .post(
            &path,
            &json!({ "body": claim_body(opts, &claim, "claiming") }),
        )
        .await?;
    let mut mine = match posted {
        Sent::Done(resp) => {
            let v = resp.json::<Value>()?;
            v["id"]
                .as_u64()
                .map(|id| (id, v["created_at"].as_str().map(str::to_string)))
        }
        Sent::Unknown(_) => None,
    };
    let listed = list_comments(client, repo, n, None, &opts.runners).await?;
    if mine.is_none() {
        mine = listed.comments.iter().find_map(|c| {
            parse_block::<Claim>(KIND_CLAIM, &c.body)
                .filter(|cl| cl.nonce == nonce)
                .map(|_| (c.id, c.updated_at.map(github_stamp)))
        });
    }
    let Some((claim_id, claimed_at)) = mine else {
        return Ok(None); // the claim did not land; an unseen one expires harmlessly
    };
    let skew = listed.now - Utc::now();
    let ours =
        |l: &Listed| matches!(winning_claim(&l.comments, l.now), Some((_, w)) if w.nonce == nonce);
    let mut won = ours(&listed);
    if won {
        // GitHub's comment list can lag behind its writes, so a rival's earlier claim may
        // not be listed yet: look once more after a pause before spending GPU time.
        tokio::time::sleep(confirm_pause(opts.lease)).await;
        won = ours(&list_comments(client, repo, n, None, &opts.runners).await?);
    }
    match won {
        true => Ok(Some(Won {
            issue: n,
            request,
            claim_id,
            nonce,
            lease_until,
            sent,
            claimed_at,
            skew,
        })),
        false => {
            claim.state = ClaimState::Withdrawn;
            let _ = client
                .patch(
                    &format!("/repos/{repo}/issues/comments/{claim_id}"),
                    &json!({ "body": claim_body(opts, &claim, "withdrawn") }),
                )
                .await;
            (opts.events)(&format!("#{n}: another runner claimed it first; withdrew"));
            Ok(None)
        }
    }
}

/// How long a runner waits before re-reading its winning claim: a tenth of the lease, at
/// most 2 s.
fn confirm_pause(lease: Duration) -> Duration {
    (lease / 10).min(Duration::from_secs(2))
}

fn lease_delta(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::minutes(10))
}

/// Labels the request `done` or `failed` (keeping its other labels) and closes it.
async fn close_issue(client: &mut Client, repo: &str, n: u64, ok: bool) -> Result<()> {
    let issue: Value = client
        .get(&format!("/repos/{repo}/issues/{n}"), None)
        .await?
        .json()?;
    let mut labels: Vec<String> = issue["labels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["name"].as_str().map(str::to_string))
                .filter(|l| l != LABEL_DONE && l != LABEL_FAILED)
                .collect()
        })
        .unwrap_or_default();
    labels.push(if ok { LABEL_DONE } else { LABEL_FAILED }.to_string());
    client
        .patch(
            &format!("/repos/{repo}/issues/{n}"),
            &json!({ "labels": labels, "state": "closed" }),
        )
        .await?;
    Ok(())
}

/// Posts the results comment, or edits our own one already there: never two.
async fn post_results(
    client: &mut Client,
    (repo, n): (&str, u64),
    (me, nonce): (&str, &str),
    runners: &[String],
    body: &str,
) -> Result<()> {
    for _attempt in 0..3 {
        let listed = list_comments(client, repo, n, None, runners).await?;
        if let Some(why) = results_refused(&listed.comments, nonce) {
            return Err(Error::Github(why));
        }
        if let Some(id) = own_results(&listed.comments, me, nonce) {
            client
                .patch(
                    &format!("/repos/{repo}/issues/comments/{id}"),
                    &json!({ "body": body }),
                )
                .await?;
            return Ok(());
        }
        match client
            .post(
                &format!("/repos/{repo}/issues/{n}/comments"),
                &json!({ "body": body }),
            )
            .await?
        {
            Sent::Done(_) => return Ok(()),
            Sent::Unknown(why) => {
                tracing::warn!(issue = n, %why, "results post uncertain; looking for it");
            }
        }
    }
    Err(Error::Github(format!("could not post the results on #{n}")))
}

/// Why this runner must not post results on a request: results under another claim
/// already count there. (Its own, from an earlier attempt, are edited instead.)
fn results_refused(comments: &[protocol::CommentView], nonce: &str) -> Option<String> {
    accepted_results(comments)
        .filter(|(_, r)| r.nonce.as_deref() != Some(nonce))
        .map(|(_, r)| {
            format!(
                "results from runner `{}` are already on the request; not posted",
                crate::sanitize::untrusted_line(&r.runner)
            )
        })
}

/// Our results comment under claim `nonce`, if one landed already.
fn own_results(comments: &[protocol::CommentView], me: &str, nonce: &str) -> Option<u64> {
    comments
        .iter()
        .find(|c| {
            c.author.eq_ignore_ascii_case(me)
                && parse_block::<Results>(KIND_RESULTS, &c.body)
                    .is_some_and(|r| r.nonce.as_deref() == Some(nonce))
        })
        .map(|c| c.id)
}

/// How long before the lease's end a runner stops trusting it: renewals must have landed
/// by then, and the job is given up once it passes. A fifth of the lease, at most a minute.
fn lease_margin(lease: Duration) -> Duration {
    (lease / 5).min(Duration::from_secs(60))
}

/// The most a withdrawal (after giving a job up) may wait on GitHub.
fn withdraw_wait(lease: Duration) -> Duration {
    lease.clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// How a renewal ended.
enum Renewal {
    /// Renewed and still the winning claim; the new lease counts from `sent`.
    Held { sent: Instant },
    /// Another claim wins now.
    Lost,
    /// The request was closed on GitHub.
    Closed,
}

/// One lease renewal: edits the claim (the lease text on GitHub's clock, and the status),
/// then re-reads the comments changed since the claim and the issue's state. Everything is
/// abandoned after `budget` (until the lease's end less the margin), so a renewal held up
/// by retries or rate-limit waits is never sent once the lease may have passed and cannot
/// bring an expired claim back.
async fn renew(
    client: &mut Client,
    (repo, n): (&str, u64),
    comment_path: &str,
    opts: &RunnerOptions,
    (claim, since, skew): (&Claim, Option<&str>, chrono::TimeDelta),
    status: &str,
    budget: Duration,
) -> Result<Renewal> {
    let sent = Instant::now();
    let mut renewed = claim.clone();
    renewed.lease_until = stamp(Utc::now() + skew + lease_delta(opts.lease));
    let body = json!({ "body": claim_body(opts, &renewed, status) });
    let attempt = async {
        client.patch(comment_path, &body).await?;
        let listed = list_comments(client, repo, n, since, &opts.runners).await?;
        let issue: Value = client
            .get(&format!("/repos/{repo}/issues/{n}"), None)
            .await?
            .json()?;
        Ok::<_, Error>((listed, issue["state"].as_str() == Some("closed")))
    };
    match tokio::time::timeout(budget, attempt).await {
        Err(_) => Err(Error::Github(
            "GitHub did not answer before the lease's end".into(),
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok((_, true))) => Ok(Renewal::Closed),
        Ok(Ok((listed, false))) => Ok(match winning_claim(&listed.comments, listed.now) {
            Some((_, w)) if w.nonce == claim.nonce => Renewal::Held { sent },
            _ => Renewal::Lost,
        }),
    }
}

/// Drops `user:password@` from every URL in `text`, and any remaining occurrence of the
/// clone URL's password or user-info (git sometimes prints them apart from the URL).
fn scrub(text: &str, clone_url: &str) -> String {
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
const KILL_WAIT: Duration = Duration::from_secs(15);

/// Runs the blocking part of a job; a panic becomes a failed job (`failed(why)`) instead of
/// a thread that ends without a result while its lease is renewed forever.
fn guarded(job: impl FnOnce() -> Work, failed: impl FnOnce(String) -> Work) -> Work {
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

enum JobEnd {
    Ran(String),
    GivenUp(String),
}

/// What the worker thread shares with the async side.
#[derive(Default)]
struct Shared {
    phase: String,
    job_db: Option<PathBuf>,
    done: Option<Work>,
    /// Why the async side stopped the job (max_job_time, a closed request): its results
    /// are still posted, with this status and reason.
    stopped: Option<(RunStatus, String)>,
}

/// The outcome of the blocking part of a job.
struct Work {
    results: Results,
    log_tail: Option<String>,
}

async fn run_job(
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
        }
    } else {
        let shared = Arc::new(Mutex::new(Shared {
            phase: "starting".into(),
            ..Default::default()
        }));
        let kill = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, kill, opts, req) = (
                shared.clone(),
                kill.clone(),
                opts.clone(),
                w.request.clone(),
            );
            std::thread::Builder::new()
                .name(format!("job #{n}"))
                .spawn(move || {
                    let work = guarded(
                        || work(&opts, &req, n, &shared, &kill),
                        |why| Work {
                            results: failed_results(&opts, &req, started, why),
                            log_tail: None,
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

fn job_dir(opts: &RunnerOptions, n: u64) -> PathBuf {
    opts.workdir.join("jobs").join(format!("issue-{n}"))
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// "training, step 120/1000 — loss 0.4312, accuracy 0.5100", read from the job's notebook.
fn status_line(shared: &Mutex<Shared>) -> String {
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
type Progress = (i64, Option<i64>, Vec<(String, f64)>);

/// Steps done, steps total and the latest value of each metric of the job's run. Read-only
/// and without migrating: the notebook belongs to the checked-out commit's labbook.
fn probe(db: &Path) -> Option<Progress> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.busy_timeout(Duration::from_secs(2)).ok()?;
    let (run, done, total): (i64, i64, Option<i64>) = conn
        .query_row(
            "SELECT id, steps_done, steps_total FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()?;
    if done == 0 {
        return None;
    }
    let metrics = conn
        .prepare(
            "SELECT k.key, c.points FROM metric_chunks c JOIN metric_keys k ON k.id = c.key_id
             WHERE c.id IN (SELECT max(id) FROM metric_chunks WHERE run_id = ?1 GROUP BY key_id)
             ORDER BY k.key",
        )
        .and_then(|mut st| {
            st.query_map([run], |r| {
                let key: String = r.get(0)?;
                let blob: Vec<u8> = r.get(1)?;
                Ok((key, blob))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, blob)| {
            let p = blob.chunks_exact(24).last()?;
            let v = f64::from_le_bytes(p[8..16].try_into().ok()?);
            Some((k, v))
        })
        .collect();
    Some((done, total, metrics))
}

fn failed_results(
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
    }
}

/// The blocking part of a job: fetch, check out, build, train, collect.
fn work(
    opts: &RunnerOptions,
    req: &RunRequest,
    n: u64,
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
    };
    let _ = std::fs::remove_dir_all(&job);
    if let Err(e) = std::fs::create_dir_all(&job) {
        return fail(format!("cannot create {}: {e}", job.display()));
    }
    let bin = {
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
    if let Err(e) = std::fs::write(&config, &req.config) {
        return fail(format!("cannot write {}: {e}", config.display()));
    }
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
    let cmd = vec![
        p(&bin),
        "--db".into(),
        p(&db),
        "--config".into(),
        p(&job.join("labbook.toml")),
        "run".into(),
        p(&config),
    ];
    let code = match run_logged(
        &wrapped(opts, &cmd),
        &checkout,
        &log,
        &[],
        kill,
        (&opts.env, opts.max_log),
    ) {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start `{}`: {e}", p(&bin))),
    };
    // Stopped for a reason with results (max_job_time, a closed request): what the run
    // recorded until then is collected and posted. Otherwise (given up) nothing is.
    if kill.load(Ordering::SeqCst) && lock(shared).stopped.is_none() {
        return fail("stopped".into());
    }
    match collect(opts, req, &db, started, code) {
        Ok(results) => {
            let tail = (results.status != "succeeded")
                .then(|| read_tail(&log))
                .flatten();
            Work {
                results,
                log_tail: tail,
            }
        }
        Err(e) => fail(e),
    }
}

/// The job notebook's run, as far as the results need it.
struct JobRun {
    id: i64,
    status: RunStatus,
    error: Option<String>,
    host: Option<String>,
    device: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    steps_done: i64,
    steps_total: Option<i64>,
    final_metrics: std::collections::BTreeMap<String, f64>,
}

/// The latest run of a job notebook (each job's notebook has one).
fn job_run(conn: &rusqlite::Connection) -> rusqlite::Result<Option<JobRun>> {
    use rusqlite::OptionalExtension as _;
    conn.query_row(
        "SELECT id, status, error, host, device, started_at, finished_at, steps_done,
                steps_total, final_metrics
         FROM runs ORDER BY id DESC LIMIT 1",
        [],
        |r| {
            let status: String = r.get(1)?;
            let metrics: Option<String> = r.get(9)?;
            Ok(JobRun {
                id: r.get(0)?,
                // A status this runner does not know: the run did not finish as it knows it.
                status: status.parse().unwrap_or(RunStatus::Crashed),
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

/// Reads the finished run from the job's notebook.
fn collect(
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
    })
}

fn git(
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

fn append_log(log: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    writeln!(f, "labbook runner: {line}")
}

/// 40 lowercase hex digits: what `git rev-parse` prints and all a request may name.
fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Fetches the branches of the clone URL into `WORKDIR/repo.git` and checks `sha` out
/// (detached) as a worktree at `checkout`, verified to be exactly `sha`. Only a commit on
/// one of the repo's branches runs: GitHub's commit API also answers for commits that only
/// a fork or a pull request has, and those are never fetched by SHA.
fn checkout_commit(
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
fn wrapped(opts: &RunnerOptions, argv: &[String]) -> Vec<String> {
    opts.wrap.iter().chain(argv).cloned().collect()
}

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
            },
            log_tail: None,
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
