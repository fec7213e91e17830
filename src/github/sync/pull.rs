//! Pulling: issues and comments changed on GitHub since the cursors, page by page, each
//! page one transaction; per issue import, adopt (with the trust checks) or three-way merge.
use super::*;

impl Syncer<'_> {
    pub(super) async fn pull_issues(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let since = gh_store::state(self.store.conn(), &repo, "issues_since")?;
        let mut path =
            format!("/repos/{repo}/issues?state=all&sort=updated&direction=asc&per_page=100");
        if let Some(s) = &since {
            path.push_str(&format!("&since={s}"));
        }
        let mut next = Some(path);
        while let Some(path) = next.take() {
            let page = self.get_page(&path).await?;
            let issues = parse_issues(&page.body)?;
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
                if let Some(fresh) = &page.to_cache {
                    gh_store::cache_page(tx, &path, fresh)?;
                }
                Ok(())
            })?;
            self.absorb(counts, events);
            next = page.next;
        }
        Ok(())
    }

    pub(super) async fn pull_comments(&mut self) -> Result<()> {
        let repo = self.repo().to_string();
        let since = gh_store::state(self.store.conn(), &repo, "comments_since")?;
        let mut path =
            format!("/repos/{repo}/issues/comments?sort=updated&direction=asc&per_page=100");
        if let Some(s) = &since {
            path.push_str(&format!("&since={s}"));
        }
        let mut next = Some(path);
        while let Some(path) = next.take() {
            let page = self.get_page(&path).await?;
            let comments = parse_comments(&page.body)?;
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
                if let Some(fresh) = &page.to_cache {
                    gh_store::cache_page(tx, &path, fresh)?;
                }
                Ok(())
            })?;
            self.absorb(counts, events);
            next = page.next;
        }
        Ok(())
    }

    /// Whether a page has an issue with an item marker that is not linked yet: only then
    /// does adopting need the token's login.
    pub(super) fn has_unlinked_marker(&self, issues: &[Issue]) -> Result<bool> {
        for issue in issues {
            if issue
                .body
                .as_deref()
                .and_then(render::parse_marker)
                .is_some()
                && gh_store::item_of_issue(self.store.conn(), self.repo(), issue.number)?.is_none()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) fn absorb(&mut self, c: Counts, events: Vec<String>) {
        self.report.imported += c.imported;
        self.report.ignored.extend(c.ignored);
        self.report.adopted += c.adopted;
        self.report.pulled += c.pulled;
        self.report.conflicts += c.conflicts;
        self.report.comments_in += c.comments_in;
        self.report.events.extend(events);
    }
}

#[derive(Default)]
pub(super) struct Counts {
    pub(super) imported: usize,
    pub(super) adopted: usize,
    pub(super) pulled: usize,
    pub(super) conflicts: usize,
    pub(super) comments_in: usize,
    pub(super) ignored: Vec<String>,
}

/// What an unlinked issue's marker is checked against.
#[derive(Clone, Copy)]
pub(super) struct Trust<'a> {
    /// The token's login; `None` when the page had no unlinked marker.
    pub(super) me: Option<&'a str>,
    pub(super) kinds: &'a [Kind],
}

/// Why an unlinked issue may not be adopted for `item` by its marker, if it may not. Only
/// the lost answer to our own create is adopted: the item is synced and has a create
/// pending from this notebook, the issue was written by the token's login, and the marker
/// is the footer's, at the very end of the body.
pub(super) fn adoption_refused(
    tx: &Transaction,
    issue: &Issue,
    item: &Item,
    trust: Trust,
) -> Result<Option<&'static str>> {
    if !trust.kinds.contains(&item.kind) || item.archived {
        return Ok(Some("not a synced item"));
    }
    if !gh_store::create_pending(tx, item.rowid)? {
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
pub(super) fn ignore_issue(
    tx: &Transaction,
    repo: &str,
    issue: &Issue,
    id: ItemId,
    why: &str,
    counts: &mut Counts,
    events: &mut Vec<String>,
) -> Result<()> {
    let key = format!("ignored#{}", issue.number);
    if gh_store::state(tx, repo, &key)?.is_none() {
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

pub(super) fn pull_issue(
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
    // The notebook page is generated from the items, not one of them.
    if super::page::is_page(issue) {
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
    let rowid = match gh_store::item_of_issue(tx, repo, issue.number)? {
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
                gh_store::end_create(tx, item.rowid)?;
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
        gh_store::update_conflict_theirs(tx, rowid, *f, &remote.get(*f))?;
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
        let values = gh_store::ConflictValues {
            base: &stored.snap.local.get(*f),
            mine: &local.get(*f),
            theirs: &remote.get(*f),
        };
        gh_store::record_conflict(tx, rowid, *f, values, &ctx.now)?;
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

pub(super) fn import_issue(
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

pub(super) fn pull_comment(
    tx: &Transaction,
    ctx: &Ctx,
    repo: &str,
    c: &IssueComment,
    me: Option<&str>,
    counts: &mut Counts,
    events: &mut Vec<String>,
) -> Result<()> {
    if gh_store::comment_is_mapped(tx, repo, c.id)? {
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
        if let Some(remote) = gh_store::posted_as(tx, local)? {
            if remote.is_none() {
                gh_store::map_comment(tx, local, repo, c.id)?;
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
    let Some(item_row) = gh_store::item_of_issue(tx, repo, number)? else {
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
    let incoming = gh_store::IncomingComment {
        item_rowid: item_row,
        author: &author,
        body: &text,
        created_at: &c.created_at,
        remote_id: c.id,
    };
    gh_store::insert_incoming_comment(tx, repo, &incoming, &ctx.now)?;
    counts.comments_in += 1;
    events.push(format!("comment from #{number} ({author})"));
    Ok(())
}
