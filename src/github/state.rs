//! Sync state as the rest of labbook sees it: per-item status (for the TUI), a summary,
//! the conflict list and conflict resolution. No network.
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::merge::Field;
use super::sync::{apply_field, conflict_fields, load_link, save_link};
use crate::error::{Error, Result};
use crate::model::{ItemId, ItemPatch};
use crate::store::Store;
use crate::store::items::{apply_patch, get_item, rowid_of};

/// How an item stands with its issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncStatus {
    /// Nothing changed here since the last sync.
    Synced,
    /// Changed here since the last sync; the next sync pushes it.
    Modified,
    /// At least one field waits for `labbook resolve`.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemSync {
    pub repo: String,
    pub issue: i64,
    pub status: SyncStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncSummary {
    pub linked: i64,
    pub conflicts: i64,
    /// Creates or comments started but not confirmed (the next sync finishes them).
    pub pending: i64,
    pub last_sync: Option<String>,
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

/// How to settle a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Keep the notebook's value; the next sync writes it to GitHub.
    Mine,
    /// Take GitHub's value into the notebook.
    Theirs,
    /// Use this value on both sides.
    Value(String),
}

/// Whether issue `number` of `repo` is linked to an item.
pub(crate) fn issue_is_linked(
    conn: &rusqlite::Connection,
    repo: &str,
    number: i64,
) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM gh_issues WHERE repo = ?1 AND number = ?2",
            rusqlite::params![repo, number],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

impl Store {
    /// True when the item is linked to a GitHub issue (cheap; no merge state is computed).
    pub fn has_issue(&self, id: ItemId) -> Result<bool> {
        let item = get_item(self.conn(), id)?;
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM gh_issues WHERE item_id = ?1",
                [item.rowid],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The item's issue and whether it is in step; `None` if it has no issue.
    pub fn sync_state(&self, id: ItemId) -> Result<Option<ItemSync>> {
        let item = get_item(self.conn(), id)?;
        let row: Option<(String, i64)> = self
            .conn()
            .query_row(
                "SELECT repo, number FROM gh_issues WHERE item_id = ?1",
                [item.rowid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((repo, issue)) = row else {
            return Ok(None);
        };
        let status = if !conflict_fields(self.conn(), item.rowid)?.is_empty() {
            SyncStatus::Conflict
        } else {
            let stored = load_link(self.conn(), item.rowid)?.unwrap_or_default();
            let local = super::render::local_proj(&item, &stored.snap.local.footer);
            if super::merge::merge(&stored.snap, &local, &stored.snap.remote, &[]).is_noop() {
                SyncStatus::Synced
            } else {
                SyncStatus::Modified
            }
        };
        Ok(Some(ItemSync {
            repo,
            issue,
            status,
        }))
    }

    pub fn sync_summary(&self) -> Result<SyncSummary> {
        let c = self.conn();
        let count = |sql: &str| -> Result<i64> { Ok(c.query_row(sql, [], |r| r.get(0))?) };
        Ok(SyncSummary {
            linked: count("SELECT count(*) FROM gh_issues")?,
            conflicts: count("SELECT count(*) FROM gh_conflicts")?,
            pending: count(
                "SELECT (SELECT count(*) FROM gh_pending) + (SELECT count(*) FROM gh_comments WHERE remote_id IS NULL)",
            )?,
            last_sync: c
                .query_row(
                    "SELECT max(value) FROM gh_state WHERE key = 'last_sync'",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .flatten(),
        })
    }

    /// Every unresolved conflict, oldest item first.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        let mut stmt = self.conn().prepare(
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

    /// Settles one conflict. Both snapshot sides take GitHub's value, then the notebook
    /// takes the chosen value: if that differs from GitHub's, the next sync pushes it.
    pub fn resolve_conflict(&mut self, id: ItemId, field: Field, how: Resolution) -> Result<()> {
        self.write(|tx, ctx| {
            let rowid = rowid_of(tx, id)?;
            let row: Option<(Option<String>, Option<String>, i64, String)> = tx
                .query_row(
                    "SELECT c.mine, c.theirs, g.number, g.repo FROM gh_conflicts c
                     JOIN gh_issues g ON g.item_id = c.item_id
                     WHERE c.item_id = ?1 AND c.field = ?2",
                    params![rowid, field.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let Some((_mine, theirs, number, repo)) = row else {
                return Err(Error::Invalid(format!("{id} has no conflict on `{field}`")));
            };
            let theirs = theirs.unwrap_or_default();
            let mut stored = load_link(tx, rowid)?.unwrap_or_default();
            stored.snap.local.set(field, &theirs);
            stored.snap.remote.set(field, &theirs);
            let value = match how {
                Resolution::Mine => None,
                Resolution::Theirs => Some(theirs.clone()),
                Resolution::Value(v) => Some(v),
            };
            if let Some(v) = value {
                let item = get_item(tx, id)?;
                let mut target = super::render::local_proj(&item, "");
                target.set(field, &v);
                let mut patch = ItemPatch::default();
                apply_field(&mut patch, &item, field, &target);
                apply_patch(tx, ctx, id, &patch)?;
            }
            save_link(tx, ctx, &repo, rowid, number, &stored)?;
            tx.execute(
                "DELETE FROM gh_conflicts WHERE item_id = ?1 AND field = ?2",
                params![rowid, field.as_str()],
            )?;
            Ok(())
        })
    }
}
