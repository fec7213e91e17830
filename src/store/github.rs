//! The `gh_*` tables: everything GitHub sync remembers between runs. Per-repo state
//! (cursors, the sync lock, ignored markers), cached list pages for conditional GETs, item
//! ↔ issue links with their merge snapshots, creates not yet confirmed, conflicts, and
//! the comment mapping. `github::sync` decides what to do; this module is the only place
//! that knows how it is stored.
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::github::merge::Field;
use crate::model::ItemId;

// ---- per-repo state ------------------------------------------------------------------

/// `gh_state[repo, key]`: cursors (`issues_since`, `comments_since`), `last_sync`, the
/// sync `lock`, and `ignored#N` for markers already reported.
pub fn state(conn: &Connection, repo: &str, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM gh_state WHERE repo = ?1 AND key = ?2",
            params![repo, key],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn set_state(conn: &Connection, repo: &str, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO gh_state (repo, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (repo, key) DO UPDATE SET value = ?3",
        params![repo, key, value],
    )?;
    Ok(())
}

pub fn clear_state(conn: &Connection, repo: &str, key: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM gh_state WHERE repo = ?1 AND key = ?2",
        params![repo, key],
    )?;
    Ok(())
}

// ---- cached list pages ---------------------------------------------------------------

/// A list page as GitHub last served it, replayed when it answers 304 Not Modified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPage {
    pub etag: String,
    pub body: String,
    /// The page's `Link` header, so a replayed page still leads to the next one.
    pub link: Option<String>,
}

pub fn cached_page(conn: &Connection, url: &str) -> Result<Option<CachedPage>> {
    Ok(conn
        .query_row(
            "SELECT etag, body, link FROM gh_etags WHERE url = ?1",
            [url],
            |r| {
                Ok(CachedPage {
                    etag: r.get(0)?,
                    body: r.get(1)?,
                    link: r.get(2)?,
                })
            },
        )
        .optional()?)
}

pub fn cache_page(conn: &Connection, url: &str, page: &CachedPage) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO gh_etags (url, etag, body, link) VALUES (?1, ?2, ?3, ?4)",
        params![
            url,
            page.etag,
            page.body,
            page.link.as_deref().filter(|l| !l.is_empty())
        ],
    )?;
    Ok(())
}

/// Drops `repo`'s cached pages except `keep` (pages of old cursors are never asked again).
pub fn drop_cached_pages_except(conn: &Connection, repo: &str, keep: &[String]) -> Result<()> {
    let stale: Vec<String> = {
        let mut stmt = conn.prepare("SELECT url FROM gh_etags WHERE url LIKE ?1")?;
        let rows = stmt.query_map([format!("/repos/{repo}/%")], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()?
            .into_iter()
            .filter(|u| !keep.contains(u))
            .collect()
    };
    for url in stale {
        conn.execute("DELETE FROM gh_etags WHERE url = ?1", [url])?;
    }
    Ok(())
}

// ---- item ↔ issue links --------------------------------------------------------------

/// The merge snapshot stored with item `rowid`'s link; `None` when it is not linked.
pub fn link_snapshot<T: DeserializeOwned>(conn: &Connection, rowid: i64) -> Result<Option<T>> {
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

/// Links item `rowid` to issue `number` of `repo` (or updates the link) with `snapshot`.
pub fn save_link<T: Serialize>(
    conn: &Connection,
    now: &str,
    repo: &str,
    rowid: i64,
    number: i64,
    snapshot: &T,
) -> Result<()> {
    let snap = serde_json::to_string(snapshot).expect("snapshot serialises");
    conn.execute(
        "INSERT INTO gh_issues (item_id, repo, number, snapshot, synced_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (item_id) DO UPDATE SET repo = ?2, number = ?3, snapshot = ?4, synced_at = ?5",
        params![rowid, repo, number, snap, now],
    )?;
    Ok(())
}

/// The item (rowid) linked to issue `number` of `repo`.
pub fn item_of_issue(conn: &Connection, repo: &str, number: i64) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT item_id FROM gh_issues WHERE repo = ?1 AND number = ?2",
            params![repo, number],
            |r| r.get(0),
        )
        .optional()?)
}

/// The repo and issue number item `rowid` is linked to.
pub fn issue_of_item(conn: &Connection, rowid: i64) -> Result<Option<(String, i64)>> {
    Ok(conn
        .query_row(
            "SELECT repo, number FROM gh_issues WHERE item_id = ?1",
            [rowid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Unarchived items linked to an issue of `repo`, with the issue number, in item order.
pub fn linked_items(conn: &Connection, repo: &str) -> Result<Vec<(ItemId, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT i.kind, i.num, g.number FROM gh_issues g JOIN items i ON i.id = g.item_id
         WHERE g.repo = ?1 AND i.archived = 0 ORDER BY i.id",
    )?;
    let rows = stmt.query_map([repo], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, num, number) = row?;
        out.push((
            ItemId {
                kind: kind.parse()?,
                num,
            },
            number,
        ));
    }
    Ok(out)
}

// ---- creates not yet confirmed -------------------------------------------------------

/// Unarchived items with no issue in `repo`, each with the start time of its unconfirmed
/// create, if one is pending.
pub fn unlinked_items(conn: &Connection, repo: &str) -> Result<Vec<(ItemId, Option<String>)>> {
    let mut stmt = conn.prepare(
        "SELECT i.kind, i.num, p.started_at FROM items i
         LEFT JOIN gh_pending p ON p.item_id = i.id AND p.repo = ?1
         WHERE i.archived = 0
           AND i.id NOT IN (SELECT item_id FROM gh_issues WHERE repo = ?1)
         ORDER BY i.id",
    )?;
    let rows = stmt.query_map([repo], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, num, pending) = row?;
        out.push((
            ItemId {
                kind: kind.parse()?,
                num,
            },
            pending,
        ));
    }
    Ok(out)
}

pub fn create_pending(conn: &Connection, rowid: i64) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT count(*) > 0 FROM gh_pending WHERE item_id = ?1",
        [rowid],
        |r| r.get(0),
    )?)
}

/// Records the intent to create an issue for item `rowid`, before the POST is sent.
pub fn begin_create(conn: &Connection, rowid: i64, repo: &str, started_at: &str) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO gh_pending (item_id, repo, started_at) VALUES (?1, ?2, ?3)",
        params![rowid, repo, started_at],
    )?;
    Ok(())
}

/// Forgets item `rowid`'s pending create (confirmed, adopted or refused).
pub fn end_create(conn: &Connection, rowid: i64) -> Result<()> {
    conn.execute("DELETE FROM gh_pending WHERE item_id = ?1", [rowid])?;
    Ok(())
}

// ---- conflicts -----------------------------------------------------------------------

/// The fields of item `rowid` waiting for `labbook resolve`.
pub fn conflict_fields(conn: &Connection, rowid: i64) -> Result<Vec<Field>> {
    let mut stmt = conn.prepare_cached("SELECT field FROM gh_conflicts WHERE item_id = ?1")?;
    let rows = stmt.query_map([rowid], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r?.parse()?);
    }
    Ok(out)
}

/// The three values of a field changed on both sides.
pub struct ConflictValues<'a> {
    pub base: &'a str,
    pub mine: &'a str,
    pub theirs: &'a str,
}

pub fn record_conflict(
    conn: &Connection,
    rowid: i64,
    field: Field,
    values: ConflictValues,
    now: &str,
) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO gh_conflicts (item_id, field, base, mine, theirs, detected_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            rowid,
            field.as_str(),
            values.base,
            values.mine,
            values.theirs,
            now
        ],
    )?;
    Ok(())
}

/// Keeps an open conflict's GitHub side current.
pub fn update_conflict_theirs(
    conn: &Connection,
    rowid: i64,
    field: Field,
    theirs: &str,
) -> Result<()> {
    conn.execute(
        "UPDATE gh_conflicts SET theirs = ?1 WHERE item_id = ?2 AND field = ?3",
        params![theirs, rowid, field.as_str()],
    )?;
    Ok(())
}

/// An open conflict's GitHub value with the issue it is on: `(theirs, repo, number)`.
pub fn conflict_theirs(
    conn: &Connection,
    rowid: i64,
    field: Field,
) -> Result<Option<(String, String, i64)>> {
    Ok(conn
        .query_row(
            "SELECT c.theirs, g.repo, g.number FROM gh_conflicts c
             JOIN gh_issues g ON g.item_id = c.item_id
             WHERE c.item_id = ?1 AND c.field = ?2",
            params![rowid, field.as_str()],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    r.get(1)?,
                    r.get(2)?,
                ))
            },
        )
        .optional()?)
}

pub fn clear_conflict(conn: &Connection, rowid: i64, field: Field) -> Result<()> {
    conn.execute(
        "DELETE FROM gh_conflicts WHERE item_id = ?1 AND field = ?2",
        params![rowid, field.as_str()],
    )?;
    Ok(())
}

/// A field changed on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub item: ItemId,
    pub title: String,
    pub issue: Option<i64>,
    pub field: Field,
    pub base: String,
    pub mine: String,
    pub theirs: String,
    pub detected_at: String,
}

/// Every unresolved conflict, oldest item first.
pub fn conflicts(conn: &Connection) -> Result<Vec<Conflict>> {
    let mut stmt = conn.prepare(
        "SELECT i.kind, i.num, i.title, g.number, c.field, c.base, c.mine, c.theirs, c.detected_at
         FROM gh_conflicts c JOIN items i ON i.id = c.item_id
         LEFT JOIN gh_issues g ON g.item_id = c.item_id
         ORDER BY i.id, c.field",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, String>(8)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, num, title, issue, field, base, mine, theirs, at) = row?;
        out.push(Conflict {
            item: ItemId {
                kind: kind.parse()?,
                num,
            },
            title,
            issue,
            field: field.parse()?,
            base: base.unwrap_or_default(),
            mine: mine.unwrap_or_default(),
            theirs: theirs.unwrap_or_default(),
            detected_at: at,
        });
    }
    Ok(out)
}

// ---- summary -------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncSummary {
    pub linked: i64,
    pub conflicts: i64,
    /// Creates or comments started but not confirmed (the next sync finishes them).
    pub pending: i64,
    pub last_sync: Option<String>,
}

pub fn summary(conn: &Connection) -> Result<SyncSummary> {
    let count = |sql: &str| -> Result<i64> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    Ok(SyncSummary {
        linked: count("SELECT count(*) FROM gh_issues")?,
        conflicts: count("SELECT count(*) FROM gh_conflicts")?,
        pending: count(
            "SELECT (SELECT count(*) FROM gh_pending) + (SELECT count(*) FROM gh_comments WHERE remote_id IS NULL)",
        )?,
        last_sync: conn
            .query_row(
                "SELECT max(value) FROM gh_state WHERE key = 'last_sync'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten(),
    })
}

// ---- comments ------------------------------------------------------------------------

/// Whether GitHub comment `remote_id` of `repo` is already mapped to a notebook comment.
pub fn comment_is_mapped(conn: &Connection, repo: &str, remote_id: i64) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT comment_id FROM gh_comments WHERE repo = ?1 AND remote_id = ?2",
            params![repo, remote_id],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .is_some())
}

/// For notebook comment `local`: `None` if there is no such comment, else its GitHub id
/// (`None` inside while it has not been posted or confirmed).
pub fn posted_as(conn: &Connection, local: i64) -> Result<Option<Option<i64>>> {
    Ok(conn
        .query_row(
            "SELECT gc.remote_id FROM comments c LEFT JOIN gh_comments gc ON gc.comment_id = c.id
             WHERE c.id = ?1",
            [local],
            |r| r.get(0),
        )
        .optional()?)
}

/// Notebook comment `local` is GitHub comment `remote_id` (posted and confirmed).
pub fn map_comment(conn: &Connection, local: i64, repo: &str, remote_id: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO gh_comments (comment_id, repo, remote_id, pending) VALUES (?1, ?2, ?3, 0)
         ON CONFLICT (comment_id) DO UPDATE SET remote_id = ?3, pending = 0",
        params![local, repo, remote_id],
    )?;
    Ok(())
}

/// Records the intent to post notebook comment `local`, before the POST is sent.
pub fn begin_comment_post(conn: &Connection, local: i64, repo: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO gh_comments (comment_id, repo, remote_id, pending) VALUES (?1, ?2, NULL, 1)
         ON CONFLICT (comment_id) DO UPDATE SET pending = 1",
        params![local, repo],
    )?;
    Ok(())
}

/// Forgets a post GitHub refused for good (nothing was posted).
pub fn forget_comment_post(conn: &Connection, local: i64) -> Result<()> {
    conn.execute("DELETE FROM gh_comments WHERE comment_id = ?1", [local])?;
    Ok(())
}

/// A GitHub comment taken into the notebook on item `item_rowid` (which counts as a change
/// of the item). Returns the notebook comment's id.
pub struct IncomingComment<'a> {
    pub item_rowid: i64,
    pub author: &'a str,
    pub body: &'a str,
    pub created_at: &'a str,
    pub remote_id: i64,
}

pub fn insert_incoming_comment(
    conn: &Connection,
    repo: &str,
    c: &IncomingComment,
    now: &str,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO comments (item_id, author, body, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![c.item_rowid, c.author, c.body, c.created_at],
    )?;
    let cid = conn.last_insert_rowid();
    conn.execute(
        "INSERT INTO gh_comments (comment_id, repo, remote_id, pending) VALUES (?1, ?2, ?3, 0)",
        params![cid, repo, c.remote_id],
    )?;
    conn.execute(
        "UPDATE items SET updated_at = ?1 WHERE id = ?2",
        params![now, c.item_rowid],
    )?;
    Ok(cid)
}

/// A notebook comment on a linked item that GitHub does not have yet.
pub struct UnpostedComment {
    pub id: i64,
    pub author: String,
    pub body: String,
    pub item: ItemId,
    pub issue: i64,
    /// A post was started and not confirmed: look for it before posting again.
    pub pending: bool,
}

/// Comments on unarchived items linked in `repo` that have no GitHub id, oldest first.
pub fn unposted_comments(conn: &Connection, repo: &str) -> Result<Vec<UnpostedComment>> {
    let mut stmt = conn.prepare(
        "SELECT c.id, c.author, c.body, i.kind, i.num, g.number, coalesce(gc.pending, 0)
         FROM comments c
         JOIN gh_issues g ON g.item_id = c.item_id AND g.repo = ?1
         JOIN items i ON i.id = c.item_id
         LEFT JOIN gh_comments gc ON gc.comment_id = c.id
         WHERE gc.remote_id IS NULL AND i.archived = 0
         ORDER BY c.id",
    )?;
    let rows = stmt.query_map([repo], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, bool>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, author, body, kind, num, issue, pending) = row?;
        out.push(UnpostedComment {
            id,
            author,
            body,
            item: ItemId {
                kind: kind.parse()?,
                num,
            },
            issue,
            pending,
        });
    }
    Ok(out)
}
