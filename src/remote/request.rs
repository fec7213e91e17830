//! The requester's side: `labbook run --remote` files a run-request issue, and
//! `labbook sync` imports the results of finished requests into the notebook.
use labbook_models::backend::BackendChoice;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::protocol::{
    self, CommentView, KIND_REQUEST, KIND_RESULTS, LABEL_REQUEST, Results, RunRequest,
    accepted_results, hidden_block, parse_block,
};
use crate::config::GithubConfig;
use crate::error::{Error, Result};
use crate::github::Token;
use crate::github::client::{Client, Sent, runtime};
use crate::model::{ItemId, RunId};
use crate::recorder::{self, Provenance};
use crate::store::{MetricPoint, RemoteOutcome, RunStatus, Store};
use labbook_models::config::RunConfig;

/// What `labbook run CONFIG --remote` asks for.
pub struct RemoteRequest<'a> {
    pub config: &'a RunConfig,
    pub config_path: Option<&'a Path>,
    pub experiment: Option<ItemId>,
    /// The git checkout whose HEAD is to be run.
    pub workdir: PathBuf,
    /// GPUs the job needs (`--gpus`); `None`: the config's CUDA `devices`, or 1.
    pub gpus: Option<u32>,
    /// The sweep this request is a point of: its id and the point's settings.
    pub sweep: Option<(&'a str, &'a [(String, String)])>,
}

/// Stored in the run's `remote` column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RemoteRef {
    pub repo: String,
    pub issue: Option<u64>,
    pub request: String,
}

/// Where run `id` was requested, if it is a remote run.
pub fn remote_ref(store: &Store, id: RunId) -> Option<RemoteRef> {
    let text = store.run_remote(id).ok().flatten()?;
    serde_json::from_str(&text).ok()
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    crate::git::output(Some(dir), args).map(|s| s.trim().to_string())
}

/// Checks the request (clean tree, commit on GitHub, experiment exists), then creates run
/// R-n in `queued-remote` and files the run-request issue. On any refusal nothing is
/// written: no run, no issue. Returns the run and the issue number.
pub fn request_run(
    store: &mut Store,
    gh: &GithubConfig,
    token: &Token,
    req: &RemoteRequest,
) -> Result<(RunId, u64)> {
    crate::github::sync::check_repo(&gh.repo)?;
    req.config
        .validate()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let commit = git(&req.workdir, &["rev-parse", "HEAD"]).ok_or_else(|| {
        Error::Invalid(format!(
            "{} is not a git checkout with a commit; a remote run needs a pushed commit",
            req.workdir.display()
        ))
    })?;
    let dirty = git(
        &req.workdir,
        &["status", "--porcelain", "--untracked-files=no"],
    )
    .ok_or_else(|| Error::Invalid("cannot read `git status`".into()))?;
    if !dirty.is_empty() {
        let n = dirty.lines().count();
        return Err(Error::Invalid(format!(
            "the working tree has uncommitted changes ({n} file(s)); commit and push them first — a remote runner only runs pushed commits"
        )));
    }
    let experiment_issue = match req.experiment {
        Some(e) => {
            store.require(e)?;
            store.sync_state(e)?.map(|s| s.issue as u64)
        }
        None => None,
    };
    let short = &commit[..commit.len().min(12)];
    let repo = gh.repo.clone();
    let rt = runtime()?;
    rt.block_on(async {
        let mut client = Client::new(gh, token)?;
        if client
            .get_if_exists(&format!("/repos/{repo}/commits/{commit}"))
            .await?
            .is_none()
        {
            return Err(Error::Invalid(format!(
                "commit {short} is not on GitHub ({repo}); push it first (`git push`) — a remote runner only runs pushed commits"
            )));
        }
        let provenance = Provenance {
            git_commit: Some(commit.clone()),
            git_diff: None,
            host: None,
            environment: None,
        };
        let mut new = recorder::new_run_in_sweep(
            req.config,
            req.config_path,
            req.experiment,
            &provenance,
            req.sweep,
        );
        new.device = Some(format!(
            "remote {}",
            crate::recorder::device_summary(&req.config.train.device_list())
        ));
        let mut remote = RemoteRef {
            repo: repo.clone(),
            issue: None,
            request: protocol::nonce(),
        };
        let run = store.create_remote_run(&new, &serde_json::to_string(&remote).expect("json"))?;
        let request = RunRequest {
            v: 1,
            id: remote.request.clone(),
            run: run.to_string(),
            commit: commit.clone(),
            backend: req.config.train.device_kind().to_string(),
            config: req.config.to_toml_string(),
            config_path: req.config_path.map(|p| p.display().to_string()),
            experiment: req.experiment.map(|e| e.to_string()),
            experiment_issue,
            requester: store.author().to_string(),
            gpus: req.gpus.or_else(|| {
                let t = &req.config.train;
                (matches!(t.device_kind(), BackendChoice::Cuda(_)) && !t.devices.is_empty())
                    .then_some(t.devices.len() as u32)
            }),
        };
        match file_issue(&mut client, &repo, &request).await {
            Ok(Filed::Issue(n)) => {
                remote.issue = Some(n);
                store.queue_remote(run, &serde_json::to_string(&remote).expect("json"))?;
                Ok((run, n))
            }
            // GitHub may still create it: keep the run; `labbook sync` settles it.
            Ok(Filed::Unconfirmed(why)) => Err(Error::Github(format!(
                "could not confirm that the run request was filed ({why}); {run} stays \
                 queued-remote: `labbook sync` attaches its issue if it arrives, or marks it failed"
            ))),
            Err(e) => {
                let _ = store.delete_unstarted_run(run);
                Err(e)
            }
        }
    })
}

/// The request issue's title and body.
pub fn request_issue(r: &RunRequest) -> (String, String) {
    let name = r
        .config_path
        .as_deref()
        .and_then(|p| Path::new(p).file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let title = format!(
        "Run request: {name} on {} ({} of {})",
        r.backend, r.run, r.requester
    );
    let exp = match (&r.experiment, r.experiment_issue) {
        (Some(e), Some(n)) => format!(" for {e} (#{n})"),
        (Some(e), None) => format!(" for {e}"),
        _ => String::new(),
    };
    let body = format!(
        "{} asks for a run of `{}` at commit `{}` on backend `{}`{exp}.\n\n\
         A `labbook runner` whose allow-list names this issue's author will claim it, run it and post the results here.\n\n\
         ```toml\n{}\n```\n\n{}",
        r.requester,
        r.config_path.as_deref().unwrap_or("(config)"),
        r.commit,
        r.backend,
        r.config.trim_end().replace("```", "'''"),
        hidden_block(KIND_REQUEST, r)
    );
    (title, body)
}

/// How filing a request issue ended.
enum Filed {
    Issue(u64),
    /// The POST's answer was lost and no issue with the request id was found (yet).
    Unconfirmed(String),
}

/// POSTs the request issue once; an uncertain POST is settled by looking for the request
/// id among recent run requests (never a blind retry, so never two issues). `Err` only
/// when GitHub definitely did not create it.
async fn file_issue(client: &mut Client, repo: &str, r: &RunRequest) -> Result<Filed> {
    let (title, body) = request_issue(r);
    if body.chars().count() > protocol::MAX_COMMENT {
        return Err(Error::Invalid(
            "the run config is too large for a GitHub issue (65,536 characters)".into(),
        ));
    }
    let payload = json!({ "title": title, "body": body, "labels": [LABEL_REQUEST] });
    match client
        .post(&format!("/repos/{repo}/issues"), &payload)
        .await?
    {
        Sent::Done(resp) => {
            let v: Value = resp.json()?;
            v["number"]
                .as_u64()
                .map(Filed::Issue)
                .ok_or_else(|| Error::Github("GitHub did not return an issue number".into()))
        }
        Sent::Unknown(why) => Ok(match find_request(client, repo, &r.id).await {
            Ok(Some(n)) => Filed::Issue(n),
            Ok(None) => Filed::Unconfirmed(why),
            Err(e) => Filed::Unconfirmed(format!("{why}; then {e}")),
        }),
    }
}

/// The run-request issue carrying request id `id`, among the 100 newest.
async fn find_request(client: &mut Client, repo: &str, id: &str) -> Result<Option<u64>> {
    let path = format!(
        "/repos/{repo}/issues?state=all&labels={LABEL_REQUEST}&sort=created&direction=desc&per_page=100"
    );
    let resp = client.get(&path, None).await?;
    let issues: Vec<Value> = resp.json()?;
    Ok(issues
        .iter()
        .find(|i| {
            i["body"]
                .as_str()
                .and_then(|b| parse_block::<RunRequest>(KIND_REQUEST, b))
                .is_some_and(|b| b.id == id)
        })
        .and_then(|i| i["number"].as_u64()))
}

/// Closes the request issue of a remote run cancelled here (`labbook cancel R-n`), with a
/// comment saying who cancelled it; a runner working on it stops the job at its next lease
/// renewal. Returns the issue number.
pub fn cancel_request(
    gh: &GithubConfig,
    token: &Token,
    remote: &RemoteRef,
    run: RunId,
    who: &str,
) -> Result<u64> {
    let Some(n) = remote.issue else {
        return Err(Error::Github(format!(
            "{run}'s request issue was never confirmed; nothing to close"
        )));
    };
    if remote.repo != gh.repo {
        return Err(Error::Github(format!(
            "{run} was requested in {}, not {}",
            remote.repo, gh.repo
        )));
    }
    let rt = runtime()?;
    rt.block_on(async {
        let mut client = Client::new(gh, token)?;
        let body = format!(
            "Cancelled by {who} with `labbook cancel {run}`. A runner working on it stops the job and reports it cancelled."
        );
        let _ = client
            .post(
                &format!("/repos/{}/issues/{n}/comments", gh.repo),
                &json!({ "body": body }),
            )
            .await?;
        client
            .patch(
                &format!("/repos/{}/issues/{n}", gh.repo),
                &json!({ "state": "closed", "state_reason": "not_planned" }),
            )
            .await?;
        Ok(n)
    })
}

/// What the import half of `labbook sync` did.
#[derive(Debug, Default, Serialize)]
pub struct SyncRemoteReport {
    /// Runs imported, with their status.
    pub finished: Vec<(RunId, RunStatus, u64)>,
    /// Runs still waiting (issue open, no results yet).
    pub waiting: usize,
    pub events: Vec<String>,
}

/// The most comment pages read from one request (100 comments each), so thousands of
/// comments on a request cannot make every lease renewal slow: past that, the first
/// [`HEAD_PAGES`] pages and the newest ones are read (claims and results are either old,
/// before a flood, or new, after it). Renewals list only what changed since the claim.
pub const MAX_COMMENT_PAGES: usize = 10;
const HEAD_PAGES: usize = 3;

/// A request's comments that may speak for the protocol, and GitHub's clock.
#[derive(Debug, Clone)]
pub struct Listed {
    pub comments: Vec<CommentView>,
    /// GitHub's time of the listing (its `Date` header); this machine's if absent.
    pub now: DateTime<Utc>,
}

/// GitHub's time from a response's `Date` header.
pub fn server_time(resp: &crate::github::client::Resp) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(resp.header("date")?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `url` with its `page` query parameter set to `page`.
fn with_page(url: &str, page: usize) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("page="))
        .map(str::to_string)
        .collect();
    params.push(format!("page={page}"));
    format!("{path}?{}", params.join("&"))
}

fn page_of(url: &str) -> Option<usize> {
    url.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("page="))
        .and_then(|p| p.parse().ok())
}

/// The comments of request `issue` (changed at or after `since`, when given; at most
/// [`MAX_COMMENT_PAGES`] pages) that may speak for the protocol (`trusted_comments`).
pub async fn list_comments(
    client: &mut Client,
    repo: &str,
    issue: u64,
    since: Option<&str>,
    runners: &[String],
) -> Result<Listed> {
    let mut first = format!("/repos/{repo}/issues/{issue}/comments?per_page=100");
    if let Some(t) = since {
        first.push_str(&format!("&since={t}"));
    }
    let resp = client.get(&first, None).await?;
    let mut now = server_time(&resp);
    let mut raw: Vec<Value> = resp.json()?;
    let link = resp.header("link").unwrap_or("").to_string();
    let last = crate::github::client::link_rel(&link, "last")
        .map(|l| client.relative(&l))
        .and_then(|l| page_of(&l).map(|p| (l, p)));
    let pages: Vec<String> = match last {
        None => Vec::new(),
        Some((url, n)) if n <= MAX_COMMENT_PAGES => (2..=n).map(|p| with_page(&url, p)).collect(),
        Some((url, n)) => {
            tracing::warn!(
                issue,
                pages = n,
                "request has many comments; reading its first and newest pages"
            );
            (2..=HEAD_PAGES)
                .chain(n + 1 + HEAD_PAGES - MAX_COMMENT_PAGES..=n)
                .map(|p| with_page(&url, p))
                .collect()
        }
    };
    for path in pages {
        let resp = client.get(&path, None).await?;
        now = server_time(&resp).or(now);
        raw.extend(resp.json::<Vec<Value>>()?);
    }
    Ok(Listed {
        comments: trusted_comments(&raw, runners),
        now: now.unwrap_or_else(Utc::now),
    })
}

/// Who may speak for the protocol: GitHub's `author_association` of people with write
/// access to the repo (the runner's account must be one, as it labels and closes issues).
const TRUSTED_ASSOCIATIONS: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];

/// The security filter of remote runs. Keeps only comments written by people with write
/// access: on a public repo anyone can comment, and a claim or results block from a
/// stranger must not block a request, close it, or put made-up results into a notebook.
/// With `[github] runners` set, claims and results from any other login are dropped too.
pub fn trusted_comments(comments: &[Value], runners: &[String]) -> Vec<CommentView> {
    comments
        .iter()
        .filter(|c| {
            c["author_association"]
                .as_str()
                .is_some_and(|a| TRUSTED_ASSOCIATIONS.contains(&a))
        })
        .filter_map(|c| {
            Some(CommentView {
                id: c["id"].as_u64()?,
                body: c["body"].as_str().unwrap_or("").to_string(),
                author: c["user"]["login"].as_str().unwrap_or("").to_string(),
                updated_at: c["updated_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
            })
        })
        .filter(|c| {
            runners.is_empty()
                || runners.iter().any(|r| r.eq_ignore_ascii_case(&c.author))
                || !(protocol::has_block(protocol::KIND_CLAIM, &c.body)
                    || protocol::has_block(KIND_RESULTS, &c.body))
        })
        .collect()
}

/// For each run of this notebook waiting on a remote runner: if its request issue has a
/// results block, records the run as finished (status, curves, host, timings); if the issue
/// was closed without results, records it as cancelled. Idempotent.
pub fn sync_remote_runs(
    store: &mut Store,
    gh: &GithubConfig,
    token: &Token,
) -> Result<SyncRemoteReport> {
    let pending = store.remote_runs_pending()?;
    let mut report = SyncRemoteReport::default();
    if pending.is_empty() {
        return Ok(report);
    }
    let rt = runtime()?;
    rt.block_on(async {
        let mut client = Client::new(gh, token)?;
        for (run, remote) in pending {
            let Ok(remote) = serde_json::from_str::<RemoteRef>(&remote) else {
                report
                    .events
                    .push(format!("{run}: unreadable remote request record; skipped"));
                continue;
            };
            if remote.repo != gh.repo {
                report.events.push(format!(
                    "{run}: requested in {}, not {}; skipped",
                    remote.repo, gh.repo
                ));
                continue;
            }
            let issue = match remote.issue {
                Some(n) => n,
                // `run --remote` was killed or lost GitHub's answer while filing.
                None => match find_request(&mut client, &gh.repo, &remote.request).await? {
                    Some(n) => {
                        let found = RemoteRef {
                            issue: Some(n),
                            ..remote.clone()
                        };
                        store.queue_remote(run, &serde_json::to_string(&found).expect("json"))?;
                        report
                            .events
                            .push(format!("{run}: found its request issue #{n}"));
                        n
                    }
                    None if filing_settled(store, run, gh)? => {
                        let never = never_ran(
                            RunStatus::Failed,
                            "the run request never reached GitHub; request the run again".into(),
                        );
                        if store.finish_remote_run(run, &never)? {
                            report
                                .events
                                .push(format!("{run}: its request never reached GitHub; failed"));
                        }
                        continue;
                    }
                    None => {
                        report.waiting += 1;
                        continue;
                    }
                },
            };
            let Some(resp) = client
                .get_if_exists(&format!("/repos/{}/issues/{issue}", gh.repo))
                .await?
            else {
                report
                    .events
                    .push(format!("{run}: request #{issue} is gone from GitHub"));
                continue;
            };
            let state: Value = resp.json()?;
            let listed = list_comments(&mut client, &gh.repo, issue, None, &gh.runners).await?;
            let outcome = match accepted_results(&listed.comments) {
                Some((_, r)) => outcome_of(&r),
                None if state["state"] == "closed" => never_ran(
                    RunStatus::Cancelled,
                    format!("request #{issue} was closed without results"),
                ),
                None => {
                    report.waiting += 1;
                    continue;
                }
            };
            let status = outcome.status;
            if store.finish_remote_run(run, &outcome)? {
                recorder::post_summary_if_synced(store, run);
                report
                    .events
                    .push(format!("{run}: {status} (results from #{issue})"));
                report.finished.push((run, status, issue));
            }
        }
        Ok(report)
    })
}

/// Whether a request filed when `run` was created can no longer land: twice the client's
/// timeout (and a second) has passed since (GitHub finishes requests it has received).
fn filing_settled(store: &Store, run: RunId, gh: &GithubConfig) -> Result<bool> {
    let created = store.get_run(run)?.created_at;
    let Ok(created) = chrono::DateTime::parse_from_rfc3339(&created) else {
        return Ok(true);
    };
    let settle = chrono::Duration::seconds(2 * gh.timeout_secs.max(1) as i64 + 1);
    Ok(chrono::Utc::now() > created.with_timezone(&chrono::Utc) + settle)
}

/// The outcome of a request that ended without running: finished now, nothing measured.
fn never_ran(status: RunStatus, error: String) -> RemoteOutcome {
    RemoteOutcome {
        status,
        started_at: None,
        finished_at: Some(crate::store::now()),
        host: None,
        device: None,
        steps_done: 0,
        final_metrics: BTreeMap::new(),
        error: Some(error),
        points: Vec::new(),
    }
}

/// The notebook's view of a results block. Its text came from GitHub: control characters
/// are dropped from every string that reaches the notebook.
pub fn outcome_of(r: &Results) -> RemoteOutcome {
    use crate::sanitize::{untrusted_line, untrusted_text};
    let line = |s: &Option<String>| s.as_deref().map(untrusted_line);
    let status = match r.status.parse::<RunStatus>() {
        Ok(s) if s.is_finished() => s,
        _ => RunStatus::Failed,
    };
    let points = r
        .curves
        .iter()
        .flat_map(|(k, pts)| {
            pts.iter().map(|(step, v, wall)| MetricPoint {
                step: *step,
                key: untrusted_line(k),
                value: v.unwrap_or(f64::NAN),
                wall_time: *wall,
            })
        })
        .collect();
    RemoteOutcome {
        status,
        started_at: line(&r.started_at),
        finished_at: line(&r.finished_at),
        host: line(&r.host),
        device: line(&r.device).or_else(|| Some(untrusted_line(&r.backend))),
        steps_done: r.steps_done,
        final_metrics: r
            .final_metrics
            .iter()
            .map(|(k, v)| (untrusted_line(k), *v))
            .collect(),
        error: r.error.as_deref().map(untrusted_text),
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_comments_by_people_with_write_access_count() {
        let comments: Vec<Value> = serde_json::from_str(
            r#"[
                {"id": 1, "body": "a", "author_association": "OWNER"},
                {"id": 2, "body": "b", "author_association": "NONE"},
                {"id": 3, "body": "c", "author_association": "COLLABORATOR"},
                {"id": 4, "body": "d", "author_association": "CONTRIBUTOR"},
                {"id": 5, "body": "e"},
                {"id": 6, "body": "f", "author_association": "MEMBER"}
            ]"#,
        )
        .unwrap();
        let ids: Vec<u64> = trusted_comments(&comments, &[])
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, vec![1, 3, 6]);
    }

    #[test]
    fn pinned_runners_alone_speak_for_claims_and_results() {
        let comments: Vec<Value> = serde_json::from_str(
            r#"[
                {"id": 1, "body": "x <!-- labbook:claim {} -->", "user": {"login": "gpu-bot"}, "author_association": "MEMBER"},
                {"id": 2, "body": "x <!-- labbook:claim {} -->", "user": {"login": "bob"}, "author_association": "MEMBER"},
                {"id": 3, "body": "x <!-- labbook:results {} -->", "user": {"login": "bob"}, "author_association": "OWNER"},
                {"id": 4, "body": "plain words", "user": {"login": "bob"}, "author_association": "MEMBER"}
            ]"#,
        )
        .unwrap();
        let ids = |runners: &[String]| -> Vec<u64> {
            trusted_comments(&comments, runners)
                .iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(ids(&[]), vec![1, 2, 3, 4]);
        assert_eq!(ids(&["GPU-bot".to_string()]), vec![1, 4]);
    }
}
