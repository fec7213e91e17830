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

use rusqlite::{Connection, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{Client, Pages, Sent};
use super::issue::{Issue, IssueComment, own_login, parse_comments, parse_issues};
use super::merge::{Field, Proj, Snapshot, merge};
use super::render::{self, comment_body, comment_marker, issue_body, local_proj};
use super::token::Token;
use crate::config::GithubConfig;
use crate::error::{Error, Result};
use crate::model::{Item, ItemId, ItemPatch, Kind, NewItem};
use crate::store::items::{apply_patch, get_item};
use crate::store::{Ctx, Store, insert_item};

mod page;
mod pull;
mod push;
use crate::store::github::{self as gh_store, CachedPage, conflict_fields, set_state};
pub use page::PAGE_BUDGET;
pub(crate) use pull::apply_field;

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
    /// The "Lab notebook" issue (`[github] notebook`).
    pub notebook_page: Option<u64>,
    /// Whether this sync created or edited the page.
    pub page_updated: bool,
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

/// Item `rowid`'s link snapshot; `None` when it has no issue.
pub(crate) fn load_link(conn: &Connection, rowid: i64) -> Result<Option<Stored>> {
    gh_store::link_snapshot(conn, rowid)
}

pub(crate) fn save_link(
    conn: &Connection,
    ctx: &Ctx,
    repo: &str,
    rowid: i64,
    number: i64,
    stored: &Stored,
) -> Result<()> {
    gh_store::save_link(conn, &ctx.now, repo, rowid, number, stored)
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
        client.set_request_limit(opts.max_requests);
        let mut s = Syncer {
            store,
            cfg,
            client,
            report: SyncReport {
                repo: cfg.repo.clone(),
                ..Default::default()
            },
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
        let me = own_login(&mut self.client).await?;
        self.me = Some(me.clone());
        Ok(me)
    }

    async fn run(&mut self) -> Result<()> {
        self.lock()?;
        let out = self.run_locked().await;
        let repo = self.repo().to_string();
        let unlock = self
            .store
            .write(|tx, _| gh_store::clear_state(tx, &repo, "lock"));
        out.and(unlock)
    }

    /// One sync per notebook and repo at a time: two concurrent creates of the same item
    /// could both miss each other's marker. A lock left by a killed process (its pid is
    /// gone, or it is over an hour old) is taken over.
    fn lock(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let me = std::process::id();
        self.store.write(|tx, ctx| {
            if let Some(v) = gh_store::state(tx, &repo, "lock")? {
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
        self.sync_page().await?;
        let repo = self.repo().to_string();
        let used = std::mem::take(&mut self.used_urls);
        self.store.write(|tx, ctx| {
            set_state(tx, &repo, "last_sync", &ctx.now)?;
            // Drop cached pages of old cursors; keep the ones this sync used.
            gh_store::drop_cached_pages_except(tx, &repo, &used)
        })?;
        Ok(())
    }

    /// GET a list page, conditional on its cached ETag; a 304 replays the cached page.
    async fn get_page(&mut self, path: &str) -> Result<Page> {
        self.used_urls.push(path.to_string());
        let cached = gh_store::cached_page(self.store.conn(), path)?;
        let resp = self
            .client
            .get(path, cached.as_ref().map(|c| c.etag.as_str()))
            .await?;
        if resp.status == 304
            && let Some(c) = cached
        {
            let next = c
                .link
                .as_deref()
                .and_then(super::client::next_link)
                .map(|l| self.client.relative(&l));
            return Ok(Page {
                body: c.body,
                next,
                to_cache: None,
            });
        }
        let next = self.client.next_page(&resp);
        // The Link header is kept beside the ETag so that a replayed page leads on.
        let to_cache = resp.header("etag").map(|etag| CachedPage {
            etag: etag.to_string(),
            body: resp.body.clone(),
            link: resp.header("link").map(str::to_string),
        });
        Ok(Page {
            body: resp.body,
            next,
            to_cache,
        })
    }
}

/// One page of a listing: its body, the path of the next page, and what to cache for the
/// next conditional GET when GitHub sent a fresh copy.
struct Page {
    body: String,
    next: Option<String>,
    to_cache: Option<CachedPage>,
}
