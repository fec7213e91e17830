//! The sync algorithm. One `sync` call:
//!
//! 1. **Pull issues** changed since the persisted cursor (`sort=updated`, ascending,
//!    `per_page=100`, ETag-conditional). Each page is applied in one transaction that
//!    also advances the cursor, so a killed sync resumes after the last applied page.
//!    Per issue: import (no marker), adopt (our marker, no mapping yet: a create whose
//!    answer was lost) or three-way merge against the stored snapshot; remote-only
//!    changes are written to the notebook, same-field changes become conflicts.
//! 2. **Pull comments** (repo-wide list, same cursor scheme); each mapped once.
//! 3. **Create** issues for unsynced items. The intent is committed before the POST, the
//!    issue number in the same transaction that clears it; an uncertain POST is followed
//!    by a marker lookup before any retry — no duplicates.
//! 4. **Push** local-only changes with PATCH (idempotent), then **post comments** the
//!    same way as creates.
use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{Client, Sent};
use super::issue::{Issue, IssueComment, own_login, parse_comments, parse_issues};
use super::merge::{Field, Proj, Snapshot, merge};
use super::render::{self, comment_body, comment_marker, issue_body, local_proj};
use super::token::Token;
use crate::config::GithubConfig;
use crate::error::{Error, Result};
use crate::model::{Item, ItemId, ItemPatch, Kind, NewItem};
use crate::store::items::{apply_patch, get_item};
use crate::store::{Ctx, Store, insert_item};

/// What one sync did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    pub repo: String,
    /// Issues imported as new items.
    pub imported: usize,
    /// Issues created for items.
    pub created: usize,
    /// Existing issues adopted by marker (a create whose answer was lost).
    pub adopted: usize,
    /// Items updated from GitHub.
    pub pulled: usize,
    /// Issues updated from the notebook.
    pub pushed: usize,
    pub comments_in: usize,
    pub comments_out: usize,
    /// Conflicts found by this sync.
    pub conflicts: usize,
    /// Items GitHub refused (422 validation errors); the rest of the sync went on.
    pub skipped: Vec<String>,
    /// Issues carrying a marker they may not use (`ignored #12: marker T-3 from @mallory`):
    /// never linked, imported or edited. Each is reported by the first sync that sees it.
    pub ignored: Vec<String>,
    /// HTTP requests sent (304s included).
    pub requests: u64,
    /// Human-readable events, one per change (for `--verbose`).
    pub events: Vec<String>,
}

/// Knobs for tests and the CLI.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Base of the retry backoff (default 200 ms).
    pub backoff: Option<Duration>,
    /// Stop after this many HTTP requests with an error, as if killed (tests).
    pub max_requests: Option<u64>,
}

/// Stored per synced item: the merge base plus the remote's label spelling.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Stored {
    #[serde(flatten)]
    pub snap: Snapshot,
    #[serde(default)]
    pub label_names: Vec<String>,
}

/// Runs one sync of `store` with `cfg.repo`. Blocking (drives its own small runtime).
pub fn sync(store: &mut Store, cfg: &GithubConfig, token: &Token) -> Result<SyncReport> {
    sync_with(store, cfg, token, &SyncOptions::default())
}

pub fn sync_with(
    store: &mut Store,
    cfg: &GithubConfig,
    token: &Token,
    opts: &SyncOptions,
) -> Result<SyncReport> {
    check_repo(&cfg.repo)?;
    let rt = super::client::runtime()?;
    rt.block_on(async {
        let mut client = Client::new(cfg, token)?;
        if let Some(b) = opts.backoff {
            client.set_backoff(b);
        }
        let mut s = Syncer {
            store,
            cfg,
            client,
            report: SyncReport {
                repo: cfg.repo.clone(),
                ..Default::default()
            },
            max_requests: opts.max_requests,
            used_urls: Vec::new(),
            me: None,
        };
        let out = s.run().await;
        s.report.requests = s.client.requests;
        out.map(|()| s.report)
    })
}

/// A definite refusal of one item (422 Validation Failed, 410 Gone, 404 on one issue:
/// deleted or transferred), as opposed to a failure of the whole sync (auth, network,
/// rate limit). The list itself answering 404 (wrong repo) is not one of these.
fn is_rejection(e: &Error) -> bool {
    matches!(e, Error::Github(m) if m.starts_with("GitHub answered 422")
        || m.starts_with("GitHub answered 410")
        || m.contains("(404 /repos/") && m.contains("/issues/"))
}

pub(crate) fn check_repo(repo: &str) -> Result<()> {
    let ok = repo.split('/').count() == 2
        && repo.split('/').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Github(format!(
            "[github] repo = \"{repo}\" is not of the form \"owner/name\""
        )))
    }
}

struct Syncer<'a> {
    store: &'a mut Store,
    cfg: &'a GithubConfig,
    client: Client,
    report: SyncReport,
    max_requests: Option<u64>,
    used_urls: Vec<String>,
    /// The token's own login, fetched the first time a marker needs checking.
    me: Option<String>,
}

fn gh_ctx(ctx: &Ctx) -> Ctx {
    Ctx {
        author: "GitHub".into(),
        now: ctx.now.clone(),
    }
}

impl Syncer<'_> {
    fn repo(&self) -> &str {
        &self.cfg.repo
    }

    /// The token's login (one `GET /user` per sync, and only when a marker needs it).
    async fn me(&mut self) -> Result<String> {
        if let Some(me) = &self.me {
            return Ok(me.clone());
        }
        self.budget()?;
        let me = own_login(&mut self.client).await?;
        self.me = Some(me.clone());
        Ok(me)
    }

    fn budget(&self) -> Result<()> {
        if let Some(max) = self.max_requests
            && self.client.requests >= max
        {
            return Err(Error::Github(format!(
                "stopped after {max} requests (test kill switch)"
            )));
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<()> {
        self.lock()?;
        let out = self.run_locked().await;
        let repo = self.repo().to_string();
        let unlock = self.store.write(|tx, _| {
            tx.execute(
                "DELETE FROM gh_state WHERE repo = ?1 AND key = 'lock'",
                [&repo],
            )?;
            Ok(())
        });
        out.and(unlock)
    }

    /// One sync per notebook and repo at a time: two concurrent creates of the same item
    /// could both miss each other's marker. A lock left by a killed process (its pid is
    /// gone, or it is over an hour old) is taken over.
    fn lock(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let me = std::process::id();
        self.store.write(|tx, ctx| {
            if let Some(v) = get_state(tx, &repo, "lock")? {
                let mut parts = v.splitn(2, ' ');
                let pid: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let at = parts.next().unwrap_or("");
                let old = chrono::DateTime::parse_from_rfc3339(at)
                    .map(|t| chrono::Utc::now() - t.with_timezone(&chrono::Utc) > chrono::Duration::hours(1))
                    .unwrap_or(true);
                let alive = pid != 0
                    && (pid == me || !cfg!(target_os = "linux") || std::path::Path::new(&format!("/proc/{pid}")).exists());
                if alive && !old {
                    return Err(Error::Github(format!(
                        "another sync of this notebook with {repo} is running (pid {pid}); try again when it ends"
                    )));
                }
            }
            set_state(tx, &repo, "lock", &format!("{me} {}", ctx.now))
        })
    }

    async fn run_locked(&mut self) -> Result<()> {
        self.pull_issues().await?;
        self.pull_comments().await?;
        self.create_issues().await?;
        self.push_changes().await?;
        self.push_comments().await?;
        let repo = self.repo().to_string();
        let used = std::mem::take(&mut self.used_urls);
        self.store.write(|tx, ctx| {
            set_state(tx, &repo, "last_sync", &ctx.now)?;
            // Drop cached pages of old cursors; keep the ones this sync used.
            let stale: Vec<String> = {
                let mut stmt = tx.prepare("SELECT url FROM gh_etags WHERE url LIKE ?1")?;
                let rows = stmt.query_map([format!("/repos/{repo}/%")], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()?
                    .into_iter()
                    .filter(|u| !used.contains(u))
                    .collect()
            };
            for u in stale {
                tx.execute("DELETE FROM gh_etags WHERE url = ?1", [u])?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// GET a list page, replaying the cached page on 304. Returns (body, next link).
    async fn get_page(&mut self, path: &str) -> Result<(String, Option<String>, Option<String>)> {
        self.budget()?;
        self.used_urls.push(path.to_string());
        let cached: Option<(String, String, Option<String>)> = self
            .store
            .conn()
            .query_row(
                "SELECT etag, body, link FROM gh_etags WHERE url = ?1",
                [path],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let resp = self
            .client
            .get(path, cached.as_ref().map(|c| c.0.as_str()))
            .await?;
        if resp.status == 304
            && let Some((_, body, link)) = cached
        {
            return Ok((
                body,
                link.as_deref().and_then(super::client::next_link),
                None,
            ));
        }
        let etag = resp.header("etag").map(str::to_string);
        let next = resp.next_link();
        Ok((
            resp.body.clone(),
            next,
            etag.map(|e| {
                // Remember the Link header beside the ETag so a 304 can be replayed.
                format!("{e}\n{}", resp.header("link").unwrap_or(""))
            }),
        ))
    }

    async fn pull_issues(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let since = get_state(self.store.conn(), &repo, "issues_since")?;
        let mut path =
            format!("/repos/{repo}/issues?state=all&sort=updated&direction=asc&per_page=100");
        if let Some(s) = &since {
            path.push_str(&format!("&since={s}"));
        }
        let mut next = Some(path);
        while let Some(path) = next.take() {
            let (body, link, etag) = self.get_page(&path).await?;
            let issues = parse_issues(&body)?;
            let me = if self.has_unlinked_marker(&issues)? {
                Some(self.me().await?)
            } else {
                None
            };
            let mut events = Vec::new();
            let mut counts = Counts::default();
            let trust = Trust {
                me: me.as_deref(),
                kinds: &self.cfg.kinds,
            };
            self.store.write(|tx, ctx| {
                for issue in &issues {
                    pull_issue(tx, ctx, &repo, issue, trust, &mut counts, &mut events)?;
                }
                if let Some(last) = issues.last() {
                    set_state(tx, &repo, "issues_since", &last.updated_at)?;
                }
                cache_page(tx, &path, etag.as_deref(), &body)?;
                Ok(())
            })?;
            self.absorb(counts, events);
            next = link.map(|l| self.client.relative(&l));
        }
        Ok(())
    }

    async fn pull_comments(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let since = get_state(self.store.conn(), &repo, "comments_since")?;
        let mut path =
            format!("/repos/{repo}/issues/comments?sort=updated&direction=asc&per_page=100");
        if let Some(s) = &since {
            path.push_str(&format!("&since={s}"));
        }
        let mut next = Some(path);
        while let Some(path) = next.take() {
            let (body, link, etag) = self.get_page(&path).await?;
            let comments = parse_comments(&body)?;
            let me = if comments.iter().any(|c| {
                c.body
                    .as_deref()
                    .is_some_and(|b| render::parse_comment_marker(b).is_some())
            }) {
                Some(self.me().await?)
            } else {
                None
            };
            let mut counts = Counts::default();
            let mut events = Vec::new();
            self.store.write(|tx, ctx| {
                for c in &comments {
                    pull_comment(tx, ctx, &repo, c, me.as_deref(), &mut counts, &mut events)?;
                }
                if let Some(last) = comments.last() {
                    let at = if last.updated_at.is_empty() {
                        &last.created_at
                    } else {
                        &last.updated_at
                    };
                    set_state(tx, &repo, "comments_since", at)?;
                }
                cache_page(tx, &path, etag.as_deref(), &body)?;
                Ok(())
            })?;
            self.absorb(counts, events);
            next = link.map(|l| self.client.relative(&l));
        }
        Ok(())
    }

    /// Whether a page has an issue with an item marker that is not linked yet: only then
    /// does adopting need the token's login.
    fn has_unlinked_marker(&self, issues: &[Issue]) -> Result<bool> {
        for issue in issues {
            if issue
                .body
                .as_deref()
                .and_then(render::parse_marker)
                .is_some()
                && !crate::github::state::issue_is_linked(
                    self.store.conn(),
                    self.repo(),
                    issue.number,
                )?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn absorb(&mut self, c: Counts, events: Vec<String>) {
        self.report.imported += c.imported;
        self.report.ignored.extend(c.ignored);
        self.report.adopted += c.adopted;
        self.report.pulled += c.pulled;
        self.report.conflicts += c.conflicts;
        self.report.comments_in += c.comments_in;
        self.report.events.extend(events);
    }

    async fn create_issues(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let kinds: Vec<&str> = self.cfg.kinds.iter().map(|k| k.as_str()).collect();
        let todo: Vec<(ItemId, Option<String>)> = {
            let mut stmt = self.store.conn().prepare(
                "SELECT i.kind, i.num, p.started_at FROM items i
                 LEFT JOIN gh_pending p ON p.item_id = i.id AND p.repo = ?1
                 WHERE i.archived = 0
                   AND i.id NOT IN (SELECT item_id FROM gh_issues WHERE repo = ?1)
                 ORDER BY i.id",
            )?;
            let rows = stmt.query_map([&repo], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, num, pending) = row?;
                if kinds.contains(&kind.as_str()) {
                    out.push((
                        ItemId {
                            kind: kind.parse()?,
                            num,
                        },
                        pending,
                    ));
                }
            }
            out
        };
        for (id, pending) in todo {
            if let Some(started) = pending {
                let mut found = self.find_issue_by_marker(id, &started).await?;
                // A killed sync's POST can still land after it died: GitHub finishes a
                // request it has received. Look again once that request would have timed out.
                if found.is_none() && self.wait_until_settled(&started).await {
                    found = self.find_issue_by_marker(id, &started).await?;
                }
                if let Some(issue) = found {
                    self.adopt(id, &issue)?;
                    continue;
                }
            }
            match self.create_one(id).await {
                Err(e) if is_rejection(&e) => {
                    self.skip(id, e)?;
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Records an item GitHub refused and forgets its unconfirmed create (nothing was
    /// created: a 422 is a definite answer).
    fn skip(&mut self, id: ItemId, e: Error) -> Result<()> {
        let msg = format!("{id}: {e}");
        tracing::warn!(%msg, "github refused an item");
        self.store.write(|tx, _| {
            let rowid = crate::store::items::rowid_of(tx, id)?;
            tx.execute("DELETE FROM gh_pending WHERE item_id = ?1", [rowid])?;
            Ok(())
        })?;
        self.report.events.push(format!("skipped {msg}"));
        self.report.skipped.push(msg);
        Ok(())
    }

    fn adopt(&mut self, id: ItemId, issue: &Issue) -> Result<()> {
        let repo = self.repo().to_string();
        self.store.write(|tx, ctx| {
            let item = get_item(tx, id)?;
            let remote = issue.proj(item.kind);
            let stored = Stored {
                snap: Snapshot {
                    local: remote.clone(),
                    remote,
                },
                label_names: issue.label_names(),
            };
            save_link(tx, ctx, &repo, item.rowid, issue.number, &stored)?;
            tx.execute("DELETE FROM gh_pending WHERE item_id = ?1", [item.rowid])?;
            Ok(())
        })?;
        self.report.adopted += 1;
        self.report.events.push(format!(
            "adopted #{} for {id} (found by marker)",
            issue.number
        ));
        Ok(())
    }

    fn rendered(&self, id: ItemId) -> Result<(Item, String)> {
        let item = self.store.get(id)?;
        let links = self.store.links_of(id)?;
        let footer = render::footer(&item, &links);
        Ok((item, footer))
    }

    async fn create_one(&mut self, id: ItemId) -> Result<()> {
        let repo = self.repo().to_string();
        let (item, footer) = self.rendered(id)?;
        let local = local_proj(&item, &footer);
        let mut payload = json!({
            "title": item.title,
            "body": issue_body(&item, &footer),
            "labels": local.labels.iter().collect::<Vec<_>>(),
        });
        if let Some(a) = &local.assignee {
            payload["assignees"] = json!([a]);
        }
        let started = crate::store::now();
        self.store.write(|tx, _| {
            tx.execute(
                "INSERT OR IGNORE INTO gh_pending (item_id, repo, started_at) VALUES (?1, ?2, ?3)",
                params![item.rowid, repo, started],
            )?;
            Ok(())
        })?;
        let path = format!("/repos/{repo}/issues");
        let mut attempt = 0;
        loop {
            self.budget()?;
            match self.client.post(&path, &payload).await? {
                Sent::Done(resp) => {
                    let issue: Issue = resp.json()?;
                    let mut snap_local = local.clone();
                    // A new issue is open; if the item is closed the state is pushed next.
                    snap_local.closed = false;
                    let stored = Stored {
                        snap: Snapshot {
                            local: snap_local,
                            remote: issue.proj(item.kind),
                        },
                        label_names: issue.label_names(),
                    };
                    self.store.write(|tx, ctx| {
                        save_link(tx, ctx, &repo, item.rowid, issue.number, &stored)?;
                        tx.execute("DELETE FROM gh_pending WHERE item_id = ?1", [item.rowid])?;
                        Ok(())
                    })?;
                    self.report.created += 1;
                    self.report
                        .events
                        .push(format!("created #{} for {id}", issue.number));
                    return Ok(());
                }
                Sent::Unknown(why) => {
                    tracing::warn!(%id, %why, "issue create uncertain; looking for its marker");
                    if let Some(issue) = self.find_issue_by_marker(id, &started).await? {
                        return self.adopt(id, &issue);
                    }
                    attempt += 1;
                    if attempt > self.cfg.retries {
                        return Err(Error::Github(format!(
                            "could not create the issue for {id}: {why}; run sync again (it will not duplicate)"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
                }
            }
        }
    }

    /// Sleeps until a create POSTed at `started` can no longer be in flight (the client's
    /// timeout plus a second); `false` when that time has already passed.
    async fn wait_until_settled(&self, started: &str) -> bool {
        let Ok(started) = chrono::DateTime::parse_from_rfc3339(started) else {
            return false;
        };
        let settled = started.with_timezone(&chrono::Utc)
            + chrono::Duration::seconds(self.cfg.timeout_secs.max(1) as i64 + 1);
        match (settled - chrono::Utc::now()).to_std() {
            Ok(wait) if !wait.is_zero() => {
                tracing::info!(?wait, "waiting for an unconfirmed create to settle");
                tokio::time::sleep(wait).await;
                true
            }
            _ => false,
        }
    }

    /// Looks through issues created since shortly before `started` for `id`'s marker.
    async fn find_issue_by_marker(&mut self, id: ItemId, started: &str) -> Result<Option<Issue>> {
        let repo = self.repo().to_string();
        let cutoff = chrono::DateTime::parse_from_rfc3339(started)
            .map(|t| t.with_timezone(&chrono::Utc) - chrono::Duration::hours(1))
            .ok();
        let mut next = Some(format!(
            "/repos/{repo}/issues?state=all&sort=created&direction=desc&per_page=100"
        ));
        let me = self.me().await?;
        let mut pages = 0;
        while let Some(path) = next.take() {
            self.budget()?;
            pages += 1;
            let resp = self.client.get(&path, None).await?;
            let issues = parse_issues(&resp.body)?;
            for issue in &issues {
                // Only our own issue ending in the footer marker is the lost create; a
                // stranger's copy of the marker is not.
                if issue.pull_request.is_none()
                    && issue.author().eq_ignore_ascii_case(&me)
                    && issue.body.as_deref().and_then(render::trailing_marker) == Some(id)
                {
                    return Ok(Some(issue.clone()));
                }
            }
            let older = issues.last().is_some_and(|i| {
                match (cutoff, chrono::DateTime::parse_from_rfc3339(&i.created_at)) {
                    (Some(c), Ok(t)) => t.with_timezone(&chrono::Utc) < c,
                    _ => false,
                }
            });
            if older || pages >= 20 {
                break;
            }
            next = resp.next_link().map(|l| self.client.relative(&l));
        }
        Ok(None)
    }

    async fn push_changes(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let linked: Vec<(ItemId, i64)> = {
            let mut stmt = self.store.conn().prepare(
                "SELECT i.kind, i.num, g.number FROM gh_issues g JOIN items i ON i.id = g.item_id
                 WHERE g.repo = ?1 AND i.archived = 0 ORDER BY i.id",
            )?;
            let rows = stmt.query_map([&repo], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, num, number) = row?;
                let kind: Kind = kind.parse()?;
                // A kind taken out of `[github] kinds` is private from then on.
                if self.cfg.kinds.contains(&kind) {
                    out.push((ItemId { kind, num }, number));
                }
            }
            out
        };
        for (id, number) in linked {
            let (item, footer) = self.rendered(id)?;
            let local = local_proj(&item, &footer);
            let stored = load_link(self.store.conn(), item.rowid)?.unwrap_or_default();
            let skip = conflict_fields(self.store.conn(), item.rowid)?;
            let m = merge(&stored.snap, &local, &stored.snap.remote, &skip);
            let footer_changed =
                local.footer != stored.snap.local.footer && !skip.contains(&Field::Body);
            let mut fields = m.push.clone();
            if footer_changed && !fields.contains(&Field::Body) {
                fields.push(Field::Body);
            }
            if fields.is_empty() {
                continue;
            }
            let mut payload = json!({});
            for f in &fields {
                match f {
                    Field::Title => payload["title"] = json!(item.title),
                    Field::Body => payload["body"] = json!(issue_body(&item, &footer)),
                    Field::State => {
                        payload["state"] = json!(if local.closed { "closed" } else { "open" })
                    }
                    Field::Labels => {
                        payload["labels"] =
                            json!(render::labels_to_send(&local.labels, &stored.label_names))
                    }
                    Field::Assignee => {
                        payload["assignees"] = json!(local.assignee.iter().collect::<Vec<_>>())
                    }
                }
            }
            self.budget()?;
            let resp = match self
                .client
                .patch(&format!("/repos/{repo}/issues/{number}"), &payload)
                .await
            {
                Err(e) if is_rejection(&e) => {
                    self.skip(id, e)?;
                    continue;
                }
                other => other?,
            };
            let issue: Issue = resp.json()?;
            let remote = issue.proj(item.kind);
            let mut stored = stored;
            for f in &fields {
                stored.snap.local.take(*f, &local);
                stored.snap.remote.take(*f, &remote);
            }
            stored.snap.local.footer = local.footer.clone();
            stored.label_names = issue.label_names();
            self.store.write(|tx, ctx| {
                save_link(tx, ctx, &repo, item.rowid, number, &stored)?;
                Ok(())
            })?;
            self.report.pushed += 1;
            self.report.events.push(format!(
                "updated #{number} from {id} ({})",
                fields
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }

    async fn push_comments(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        #[allow(clippy::type_complexity)]
        let todo: Vec<(i64, String, String, String, i64, i64, bool)> = {
            let mut stmt = self.store.conn().prepare(
                "SELECT c.id, c.author, c.body, i.kind, i.num, g.number, coalesce(gc.pending, 0)
                 FROM comments c
                 JOIN gh_issues g ON g.item_id = c.item_id AND g.repo = ?1
                 JOIN items i ON i.id = c.item_id
                 LEFT JOIN gh_comments gc ON gc.comment_id = c.id
                 WHERE gc.remote_id IS NULL AND i.archived = 0
                 ORDER BY c.id",
            )?;
            let rows = stmt.query_map([&repo], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let mut issue_comments: HashMap<i64, Vec<IssueComment>> = HashMap::new();
        for (cid, author, text, kind, num, number, pending) in todo {
            let item_id = ItemId {
                kind: kind.parse()?,
                num,
            };
            if !self.cfg.kinds.contains(&item_id.kind) {
                continue;
            }
            let marker = comment_marker(cid);
            if pending
                && let Some(remote) = self
                    .find_comment(number, &marker, &mut issue_comments)
                    .await?
            {
                self.map_comment(cid, remote)?;
                continue;
            }
            let body = comment_body(
                &format!("**{author}** (labbook):\n\n{text}"),
                &marker,
                &format!("a comment on {item_id}"),
            );
            self.store.write(|tx, _| {
                tx.execute(
                    "INSERT INTO gh_comments (comment_id, repo, remote_id, pending) VALUES (?1, ?2, NULL, 1)
                     ON CONFLICT (comment_id) DO UPDATE SET pending = 1",
                    params![cid, repo],
                )?;
                Ok(())
            })?;
            let path = format!("/repos/{repo}/issues/{number}/comments");
            let mut attempt = 0;
            loop {
                self.budget()?;
                let sent = match self.client.post(&path, &json!({ "body": body })).await {
                    Err(e) if is_rejection(&e) => {
                        // Refused for good (deleted issue, validation): nothing was posted.
                        self.store.write(|tx, _| {
                            tx.execute("DELETE FROM gh_comments WHERE comment_id = ?1", [cid])?;
                            Ok(())
                        })?;
                        let msg = format!("a comment of {item_id}: {e}");
                        self.report.events.push(format!("skipped {msg}"));
                        self.report.skipped.push(msg);
                        break;
                    }
                    other => other?,
                };
                match sent {
                    Sent::Done(resp) => {
                        let c: IssueComment = resp.json()?;
                        self.map_comment(cid, c.id)?;
                        self.report.comments_out += 1;
                        self.report
                            .events
                            .push(format!("posted a comment of {item_id} on #{number}"));
                        break;
                    }
                    Sent::Unknown(why) => {
                        issue_comments.remove(&number);
                        if let Some(remote) = self
                            .find_comment(number, &marker, &mut issue_comments)
                            .await?
                        {
                            self.map_comment(cid, remote)?;
                            break;
                        }
                        attempt += 1;
                        if attempt > self.cfg.retries {
                            return Err(Error::Github(format!(
                                "could not post a comment of {item_id}: {why}; run sync again (it will not duplicate)"
                            )));
                        }
                        tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
                    }
                }
            }
        }
        Ok(())
    }

    fn map_comment(&mut self, cid: i64, remote: i64) -> Result<()> {
        let repo = self.repo().to_string();
        self.store.write(|tx, _| {
            tx.execute(
                "INSERT INTO gh_comments (comment_id, repo, remote_id, pending) VALUES (?1, ?2, ?3, 0)
                 ON CONFLICT (comment_id) DO UPDATE SET remote_id = ?3, pending = 0",
                params![cid, repo, remote],
            )?;
            Ok(())
        })
    }

    async fn find_comment(
        &mut self,
        number: i64,
        marker: &str,
        cache: &mut HashMap<i64, Vec<IssueComment>>,
    ) -> Result<Option<i64>> {
        let known = cache.contains_key(&number);
        if !known {
            let repo = self.repo().to_string();
            let mut all = Vec::new();
            let mut next = Some(format!(
                "/repos/{repo}/issues/{number}/comments?per_page=100"
            ));
            while let Some(path) = next.take() {
                self.budget()?;
                let resp = self.client.get(&path, None).await?;
                all.extend(parse_comments(&resp.body)?);
                next = resp.next_link().map(|l| self.client.relative(&l));
            }
            cache.insert(number, all);
        }
        let me = self.me().await?;
        Ok(cache[&number]
            .iter()
            .find(|c| {
                c.author().eq_ignore_ascii_case(&me)
                    && c.body
                        .as_deref()
                        .is_some_and(|b| b.trim_end().ends_with(marker))
            })
            .map(|c| c.id))
    }
}

#[derive(Default)]
struct Counts {
    imported: usize,
    adopted: usize,
    pulled: usize,
    conflicts: usize,
    comments_in: usize,
    ignored: Vec<String>,
}

/// What an unlinked issue's marker is checked against.
#[derive(Clone, Copy)]
struct Trust<'a> {
    /// The token's login; `None` when the page had no unlinked marker.
    me: Option<&'a str>,
    kinds: &'a [Kind],
}

/// Why an unlinked issue may not be adopted for `item` by its marker, if it may not. Only
/// the lost answer to our own create is adopted: the item is synced and has a create
/// pending from this notebook, the issue was written by the token's login, and the marker
/// is the footer's, at the very end of the body.
fn adoption_refused(
    tx: &Transaction,
    issue: &Issue,
    item: &Item,
    trust: Trust,
) -> Result<Option<&'static str>> {
    if !trust.kinds.contains(&item.kind) || item.archived {
        return Ok(Some("not a synced item"));
    }
    let pending: bool = tx.query_row(
        "SELECT count(*) > 0 FROM gh_pending WHERE item_id = ?1",
        [item.rowid],
        |r| r.get(0),
    )?;
    if !pending {
        return Ok(Some("no create pending"));
    }
    if !trust
        .me
        .is_some_and(|me| issue.author().eq_ignore_ascii_case(me))
    {
        return Ok(Some("not written by this notebook's account"));
    }
    if issue.body.as_deref().and_then(render::trailing_marker) != Some(item.id) {
        return Ok(Some("not the footer marker"));
    }
    Ok(None)
}

/// Reports an issue whose marker may not be used, once (remembered in `gh_state`).
fn ignore_issue(
    tx: &Transaction,
    repo: &str,
    issue: &Issue,
    id: ItemId,
    why: &str,
    counts: &mut Counts,
    events: &mut Vec<String>,
) -> Result<()> {
    let key = format!("ignored#{}", issue.number);
    if get_state(tx, repo, &key)?.is_none() {
        set_state(tx, repo, &key, &id.to_string())?;
        let line = format!(
            "ignored #{}: marker {id} from @{}",
            issue.number,
            issue.author()
        );
        tracing::warn!(%line, why, "untrusted marker");
        events.push(format!("{line} ({why})"));
        counts.ignored.push(line);
    }
    Ok(())
}

fn pull_issue(
    tx: &Transaction,
    ctx: &Ctx,
    repo: &str,
    issue: &Issue,
    trust: Trust,
    counts: &mut Counts,
    events: &mut Vec<String>,
) -> Result<()> {
    if issue.pull_request.is_some() {
        return Ok(());
    }
    // Run requests (`run --remote`) are a queue for runners, not notebook items.
    if issue
        .labels
        .iter()
        .any(|l| l.name == crate::remote::protocol::LABEL_REQUEST)
        || issue.body.as_deref().is_some_and(|b| {
            crate::remote::protocol::has_block(crate::remote::protocol::KIND_REQUEST, b)
        })
    {
        return Ok(());
    }
    let gh = gh_ctx(ctx);
    let linked: Option<i64> = tx
        .query_row(
            "SELECT item_id FROM gh_issues WHERE repo = ?1 AND number = ?2",
            params![repo, issue.number],
            |r| r.get(0),
        )
        .optional()?;
    let rowid = match linked {
        Some(r) => r,
        None => match issue.body.as_deref().and_then(render::parse_marker) {
            Some(id) => {
                let Ok(item) = get_item(tx, id) else {
                    return ignore_issue(tx, repo, issue, id, "no such item here", counts, events);
                };
                if load_link(tx, item.rowid)?.is_some() {
                    return ignore_issue(
                        tx,
                        repo,
                        issue,
                        id,
                        "already synced with another issue",
                        counts,
                        events,
                    );
                }
                if let Some(why) = adoption_refused(tx, issue, &item, trust)? {
                    return ignore_issue(tx, repo, issue, id, why, counts, events);
                }
                let remote = issue.proj(item.kind);
                let stored = Stored {
                    snap: Snapshot {
                        local: remote.clone(),
                        remote,
                    },
                    label_names: issue.label_names(),
                };
                save_link(tx, ctx, repo, item.rowid, issue.number, &stored)?;
                tx.execute("DELETE FROM gh_pending WHERE item_id = ?1", [item.rowid])?;
                counts.adopted += 1;
                events.push(format!(
                    "adopted #{} for {id} (found by marker)",
                    issue.number
                ));
                // The local side's differences are pushed later as local changes.
                return Ok(());
            }
            None => {
                return import_issue(tx, &gh, ctx, repo, issue, counts, events);
            }
        },
    };
    let item = crate::store::items::get_item_by_rowid(tx, rowid)?;
    let mut stored = load_link(tx, rowid)?.unwrap_or_default();
    let local = local_proj(&item, &stored.snap.local.footer);
    let remote = issue.proj(item.kind);
    let skip = conflict_fields(tx, rowid)?;
    // Keep "theirs" of open conflicts current.
    for f in &skip {
        tx.execute(
            "UPDATE gh_conflicts SET theirs = ?1 WHERE item_id = ?2 AND field = ?3",
            params![remote.get(*f), rowid, f.as_str()],
        )?;
    }
    let mut m = merge(&stored.snap, &local, &remote, &skip);
    // Never pull a body that still carries our truncation pointer: that would replace the
    // full local text with the truncated copy. Ask the user instead.
    if m.pull.contains(&Field::Body) && render::is_truncated(&remote.body) {
        m.pull.retain(|f| *f != Field::Body);
        m.conflicts.push(Field::Body);
    }
    let mut patch = ItemPatch::default();
    for f in &m.pull {
        apply_field(&mut patch, &item, *f, &remote);
    }
    if let Some(merged) = &m.merged_labels {
        patch.tags = Some(render::tags_from_labels(merged));
    }
    let updated = if patch.is_empty() {
        item.clone()
    } else {
        apply_patch(tx, &gh, item.id, &patch)?
    };
    let new_local = local_proj(&updated, &stored.snap.local.footer);
    for f in m.pull.iter().chain(&m.agreed) {
        stored.snap.local.take(*f, &new_local);
        stored.snap.remote.take(*f, &remote);
    }
    if m.merged_labels.is_some() {
        // The merged set is pushed as a local change; GitHub's side is now known.
        stored.snap.remote.labels = remote.labels.clone();
        stored.snap.local.labels = remote.labels.clone();
    }
    stored.label_names = issue.label_names();
    for f in &m.conflicts {
        tx.execute(
            "INSERT OR REPLACE INTO gh_conflicts (item_id, field, base, mine, theirs, detected_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                rowid,
                f.as_str(),
                stored.snap.local.get(*f),
                local.get(*f),
                remote.get(*f),
                ctx.now
            ],
        )?;
        counts.conflicts += 1;
        events.push(format!(
            "conflict on {} {f}: changed here and on GitHub (#{})",
            item.id, issue.number
        ));
    }
    save_link(tx, ctx, repo, rowid, issue.number, &stored)?;
    if !patch.is_empty() {
        counts.pulled += 1;
        events.push(format!("updated {} from #{}", item.id, issue.number));
    }
    Ok(())
}

/// Writes one remote field value into a patch for `item`.
pub(crate) fn apply_field(patch: &mut ItemPatch, item: &Item, f: Field, value: &Proj) {
    match f {
        Field::Title => patch.title = Some(value.title.clone()),
        Field::Body => patch.body = Some(value.body.clone()),
        Field::State => {
            patch.status = Some(render::status_for(item.kind, &item.status, value.closed))
        }
        Field::Labels => patch.tags = Some(render::tags_from_labels(&value.labels)),
        Field::Assignee => {
            if item.kind == Kind::Task {
                patch
                    .fields
                    .push(("assignee".into(), value.assignee.clone()))
            }
        }
    }
}

fn import_issue(
    tx: &Transaction,
    gh: &Ctx,
    ctx: &Ctx,
    repo: &str,
    issue: &Issue,
    counts: &mut Counts,
    events: &mut Vec<String>,
) -> Result<()> {
    let names = issue.label_names();
    let kind = render::kind_from_labels(&names);
    let remote = issue.proj(kind);
    let mut new = NewItem::new(kind, issue.title.clone());
    if new.title.trim().is_empty() {
        new.title = format!("GitHub issue #{}", issue.number);
    }
    new.body = remote.body.clone();
    let closed = issue.state == "closed";
    new.status = Some(if closed {
        kind.statuses()[2].to_string()
    } else {
        kind.default_status().to_string()
    });
    new.tags = render::tags_from_labels(&remote.labels);
    if kind == Kind::Task {
        new.fields.assignee = remote.assignee.clone();
    }
    let author = issue
        .user
        .as_ref()
        .map(|u| format!("{} (GitHub)", u.login))
        .unwrap_or_else(|| gh.author.clone());
    let ictx = Ctx {
        author,
        now: ctx.now.clone(),
    };
    let item = insert_item(tx, &ictx, &new)?;
    // The footer is not pushed just for the import (that would cost a PATCH per issue);
    // it goes with the next real change.
    let footer = render::footer(&item, &[]);
    let stored = Stored {
        snap: Snapshot {
            local: local_proj(&item, &footer),
            remote,
        },
        label_names: names,
    };
    save_link(tx, ctx, repo, item.rowid, issue.number, &stored)?;
    counts.imported += 1;
    events.push(format!("imported #{} as {}", issue.number, item.id));
    Ok(())
}

fn pull_comment(
    tx: &Transaction,
    ctx: &Ctx,
    repo: &str,
    c: &IssueComment,
    me: Option<&str>,
    counts: &mut Counts,
    events: &mut Vec<String>,
) -> Result<()> {
    let mapped: Option<i64> = tx
        .query_row(
            "SELECT comment_id FROM gh_comments WHERE repo = ?1 AND remote_id = ?2",
            params![repo, c.id],
            |r| r.get(0),
        )
        .optional()?;
    if mapped.is_some() {
        return Ok(());
    }
    let body = c.body.clone().unwrap_or_default();
    // A comment marker maps a comment of ours whose answer was lost; only comments written
    // by the token's own login may carry one (anyone else's is an ordinary comment).
    let ours = me.is_some_and(|me| c.author().eq_ignore_ascii_case(me));
    if let Some(local) = render::parse_comment_marker(&body).filter(|_| ours)
        && body.trim_end().ends_with(&comment_marker(local))
    {
        // One of ours whose answer was lost: map it (once).
        let row: Option<Option<i64>> = tx
            .query_row(
                "SELECT gc.remote_id FROM comments c LEFT JOIN gh_comments gc ON gc.comment_id = c.id
                 WHERE c.id = ?1",
                [local],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(remote) = row {
            if remote.is_none() {
                tx.execute(
                    "INSERT INTO gh_comments (comment_id, repo, remote_id, pending) VALUES (?1, ?2, ?3, 0)
                     ON CONFLICT (comment_id) DO UPDATE SET remote_id = ?3, pending = 0",
                    params![local, repo, c.id],
                )?;
            }
            return Ok(());
        }
    }
    let Some(number) = c
        .issue_url
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<i64>().ok())
    else {
        return Ok(());
    };
    let item_row: Option<i64> = tx
        .query_row(
            "SELECT item_id FROM gh_issues WHERE repo = ?1 AND number = ?2",
            params![repo, number],
            |r| r.get(0),
        )
        .optional()?;
    let Some(item_row) = item_row else {
        return Ok(());
    };
    let author = c
        .user
        .as_ref()
        .map(|u| format!("{} (GitHub)", u.login))
        .unwrap_or_else(|| "GitHub".into());
    let text = body.replace("\r\n", "\n");
    if text.trim().is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO comments (item_id, author, body, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![item_row, author, text, c.created_at],
    )?;
    let cid = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO gh_comments (comment_id, repo, remote_id, pending) VALUES (?1, ?2, ?3, 0)",
        params![cid, repo, c.id],
    )?;
    tx.execute(
        "UPDATE items SET updated_at = ?1 WHERE id = ?2",
        params![ctx.now, item_row],
    )?;
    counts.comments_in += 1;
    events.push(format!("comment from #{number} ({author})"));
    Ok(())
}

pub(crate) fn get_state(
    conn: &rusqlite::Connection,
    repo: &str,
    key: &str,
) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM gh_state WHERE repo = ?1 AND key = ?2",
            params![repo, key],
            |r| r.get(0),
        )
        .optional()?)
}

pub(crate) fn set_state(tx: &Transaction, repo: &str, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO gh_state (repo, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (repo, key) DO UPDATE SET value = ?3",
        params![repo, key, value],
    )?;
    Ok(())
}

fn cache_page(tx: &Transaction, url: &str, etag_and_link: Option<&str>, body: &str) -> Result<()> {
    if let Some(v) = etag_and_link {
        let (etag, link) = v.split_once('\n').unwrap_or((v, ""));
        tx.execute(
            "INSERT OR REPLACE INTO gh_etags (url, etag, body, link) VALUES (?1, ?2, ?3, ?4)",
            params![url, etag, body, Some(link).filter(|l| !l.is_empty())],
        )?;
    }
    Ok(())
}

pub(crate) fn load_link(conn: &rusqlite::Connection, rowid: i64) -> Result<Option<Stored>> {
    let snap: Option<String> = conn
        .query_row(
            "SELECT snapshot FROM gh_issues WHERE item_id = ?1",
            [rowid],
            |r| r.get(0),
        )
        .optional()?;
    snap.map(|s| {
        serde_json::from_str(&s)
            .map_err(|e| Error::Invalid(format!("corrupt sync snapshot for item {rowid}: {e}")))
    })
    .transpose()
}

pub(crate) fn save_link(
    tx: &Transaction,
    ctx: &Ctx,
    repo: &str,
    rowid: i64,
    number: i64,
    stored: &Stored,
) -> Result<()> {
    let snap = serde_json::to_string(stored).expect("snapshot serialises");
    tx.execute(
        "INSERT INTO gh_issues (item_id, repo, number, snapshot, synced_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (item_id) DO UPDATE SET repo = ?2, number = ?3, snapshot = ?4, synced_at = ?5",
        params![rowid, repo, number, snap, ctx.now],
    )?;
    Ok(())
}

pub(crate) fn conflict_fields(conn: &rusqlite::Connection, rowid: i64) -> Result<Vec<Field>> {
    let mut stmt = conn.prepare_cached("SELECT field FROM gh_conflicts WHERE item_id = ?1")?;
    let rows = stmt.query_map([rowid], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r?.parse()?);
    }
    Ok(out)
}
