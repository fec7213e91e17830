//! Claims: deciding about a request, claiming it with a nonce and a lease, confirming the
//! win, renewing the lease while the job runs (the claim comment is the status comment),
//! withdrawing, and closing the request with its label.
use super::*;
/// Why request `n` must not run because of who last edited it, if so: its body was last
/// edited by someone who is neither its author nor on the allow-list (GraphQL's
/// `Issue.editor` / `lastEditedAt`; the REST API does not say who edited an issue).
pub(super) async fn edit_refused(
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

pub(super) fn claim_body(opts: &RunnerOptions, claim: &Claim, status: &str) -> String {
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
pub(super) async fn consider(
    client: &mut Client,
    gh: &GithubConfig,
    opts: &RunnerOptions,
    issue: &Issue,
    free_gpus: Option<usize>,
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
    if let Some(free) = free_gpus {
        let need = request.gpus_needed();
        if need > opts.gpus.len() {
            (opts.events)(&format!(
                "#{n}: asks for {need} GPUs, this runner hands out {}; left for another",
                opts.gpus.len()
            ));
            return Ok(None);
        }
        if need > free {
            return Ok(None); // waits until enough GPUs are free
        }
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
            gpus: Vec::new(),
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
pub(super) fn confirm_pause(lease: Duration) -> Duration {
    (lease / 10).min(Duration::from_secs(2))
}

pub(super) fn lease_delta(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::minutes(10))
}

/// Labels the request `done` or `failed` (keeping its other labels) and closes it.
pub(super) async fn close_issue(client: &mut Client, repo: &str, n: u64, ok: bool) -> Result<()> {
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
pub(super) async fn post_results(
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
pub(super) fn results_refused(comments: &[protocol::CommentView], nonce: &str) -> Option<String> {
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
pub(super) fn own_results(
    comments: &[protocol::CommentView],
    me: &str,
    nonce: &str,
) -> Option<u64> {
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
pub(super) fn lease_margin(lease: Duration) -> Duration {
    (lease / 5).min(Duration::from_secs(60))
}

/// The most a withdrawal (after giving a job up) may wait on GitHub.
pub(super) fn withdraw_wait(lease: Duration) -> Duration {
    lease.clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// How a renewal ended.
pub(super) enum Renewal {
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
pub(super) async fn renew(
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
