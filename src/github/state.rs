//! Sync state as the rest of labbook sees it: per-item status (for the TUI), a summary,
//! the conflict list and conflict resolution. No network.
use serde::Serialize;

use super::merge::Field;
use super::sync::{apply_field, load_link, save_link};
use crate::error::{Error, Result};
use crate::model::{ItemId, ItemPatch};
use crate::store::Store;
use crate::store::github::{self as gh_store, conflict_fields};
pub use crate::store::github::{Conflict, SyncSummary};
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

impl Store {
    /// True when the item is linked to a GitHub issue (cheap; no merge state is computed).
    pub fn has_issue(&self, id: ItemId) -> Result<bool> {
        let item = get_item(self.conn(), id)?;
        Ok(gh_store::issue_of_item(self.conn(), item.rowid)?.is_some())
    }

    /// The item's issue and whether it is in step; `None` if it has no issue.
    pub fn sync_state(&self, id: ItemId) -> Result<Option<ItemSync>> {
        let item = get_item(self.conn(), id)?;
        let Some((repo, issue)) = gh_store::issue_of_item(self.conn(), item.rowid)? else {
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
        gh_store::summary(self.conn())
    }

    /// Every unresolved conflict, oldest item first.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        gh_store::conflicts(self.conn())
    }

    /// Settles one conflict. Both snapshot sides take GitHub's value, then the notebook
    /// takes the chosen value: if that differs from GitHub's, the next sync pushes it.
    pub fn resolve_conflict(&mut self, id: ItemId, field: Field, how: Resolution) -> Result<()> {
        self.write(|tx, ctx| {
            let rowid = rowid_of(tx, id)?;
            let Some((theirs, repo, number)) = gh_store::conflict_theirs(tx, rowid, field)? else {
                return Err(Error::Invalid(format!("{id} has no conflict on `{field}`")));
            };
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
            gh_store::clear_conflict(tx, rowid, field)
        })
    }
}
