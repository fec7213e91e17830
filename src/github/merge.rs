//! The pure three-way, field-level merge between a notebook item and its issue.
//!
//! Both sides are reduced to a [`Proj`] (the fields that sync). The base is a
//! [`Snapshot`] holding *each side's* projection at the last sync, so normalisation
//! that differs per side (a truncated body, a status that maps to open/closed) never
//! looks like a change. A field changed on one side wins; the same field changed on
//! both sides to different values is a conflict; tags/labels merge as sets.
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The synced fields of one item/issue, as one side sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proj {
    pub title: String,
    /// The user-written body (without labbook's footer and marker).
    pub body: String,
    pub closed: bool,
    /// Kind label plus tags, normalised like tags.
    pub labels: BTreeSet<String>,
    pub assignee: Option<String>,
    /// Rendered footer (links, paper metadata). Local side only; pushed with the body.
    #[serde(default)]
    pub footer: String,
}

/// Each side's projection at the last successful sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub local: Proj,
    pub remote: Proj,
}

/// A field that syncs (and can be in conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    Title,
    Body,
    State,
    Labels,
    Assignee,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::Title,
        Field::Body,
        Field::State,
        Field::Labels,
        Field::Assignee,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Body => "body",
            Field::State => "state",
            Field::Labels => "labels",
            Field::Assignee => "assignee",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Field {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = match s {
            "status" | "tags" => {
                if s == "status" {
                    "state"
                } else {
                    "labels"
                }
            }
            other => other,
        };
        Field::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "`{s}` is not a synced field (fields: title, body, state, labels, assignee)"
                ))
            })
    }
}

impl Proj {
    /// The field's value as text (for conflicts and their display).
    pub fn get(&self, field: Field) -> String {
        match field {
            Field::Title => self.title.clone(),
            Field::Body => self.body.clone(),
            Field::State => if self.closed { "closed" } else { "open" }.into(),
            Field::Labels => self.labels.iter().cloned().collect::<Vec<_>>().join(", "),
            Field::Assignee => self.assignee.clone().unwrap_or_default(),
        }
    }

    /// Sets the field from text as [`Proj::get`] writes it.
    pub fn set(&mut self, field: Field, value: &str) {
        match field {
            Field::Title => self.title = value.into(),
            Field::Body => self.body = value.into(),
            Field::State => self.closed = value.trim() == "closed",
            Field::Labels => {
                self.labels = value
                    .split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            }
            Field::Assignee => {
                self.assignee = Some(value.trim().to_string()).filter(|v| !v.is_empty())
            }
        }
    }

    /// Copies one field from `other`.
    pub fn take(&mut self, field: Field, other: &Proj) {
        match field {
            Field::Title => self.title = other.title.clone(),
            Field::Body => self.body = other.body.clone(),
            Field::State => self.closed = other.closed,
            Field::Labels => self.labels = other.labels.clone(),
            Field::Assignee => self.assignee = other.assignee.clone(),
        }
    }

    fn same(&self, field: Field, other: &Proj) -> bool {
        match field {
            Field::Title => self.title == other.title,
            Field::Body => self.body == other.body,
            Field::State => self.closed == other.closed,
            Field::Labels => self.labels == other.labels,
            Field::Assignee => self.assignee == other.assignee,
        }
    }
}

/// What the merge decided, per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merge {
    /// Changed locally only: write the local value to GitHub.
    pub push: Vec<Field>,
    /// Changed on GitHub only: write the remote value into the notebook.
    pub pull: Vec<Field>,
    /// Changed on both sides to different values (labels never conflict).
    pub conflicts: Vec<Field>,
    /// Changed on both sides to the same value: only the snapshot moves.
    pub agreed: Vec<Field>,
    /// Labels changed on both sides: the set-merged result for both.
    pub merged_labels: Option<BTreeSet<String>>,
}

impl Merge {
    pub fn is_noop(&self) -> bool {
        self.push.is_empty()
            && self.pull.is_empty()
            && self.conflicts.is_empty()
            && self.merged_labels.is_none()
    }
}

/// Three-way merge of `local` and `remote` against `base`. Fields in `skip` (already
/// in conflict) are left alone.
pub fn merge(base: &Snapshot, local: &Proj, remote: &Proj, skip: &[Field]) -> Merge {
    let mut m = Merge::default();
    for field in Field::ALL {
        if skip.contains(&field) {
            continue;
        }
        let local_changed = !local.same(field, &base.local);
        let remote_changed = !remote.same(field, &base.remote);
        match (local_changed, remote_changed) {
            (false, false) => {}
            (true, false) => m.push.push(field),
            (false, true) => m.pull.push(field),
            (true, true) if field == Field::Labels => {
                m.merged_labels = Some(merge_sets(
                    &base.local.labels,
                    &local.labels,
                    &base.remote.labels,
                    &remote.labels,
                ));
            }
            (true, true) if local.same(field, remote) => m.agreed.push(field),
            (true, true) => m.conflicts.push(field),
        }
    }
    m
}

/// Set merge: everything either side added, minus everything either side removed.
pub fn merge_sets(
    base_local: &BTreeSet<String>,
    local: &BTreeSet<String>,
    base_remote: &BTreeSet<String>,
    remote: &BTreeSet<String>,
) -> BTreeSet<String> {
    let removed: BTreeSet<&String> = base_local
        .difference(local)
        .chain(base_remote.difference(remote))
        .collect();
    local
        .union(remote)
        .filter(|l| !removed.contains(l))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proj(title: &str, body: &str, closed: bool, labels: &[&str]) -> Proj {
        Proj {
            title: title.into(),
            body: body.into(),
            closed,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            assignee: None,
            footer: String::new(),
        }
    }

    fn base() -> Snapshot {
        let p = proj("t", "b", false, &["task", "cuda"]);
        Snapshot {
            local: p.clone(),
            remote: p,
        }
    }

    #[test]
    fn nothing_changed_is_a_noop() {
        let b = base();
        let m = merge(&b, &b.local, &b.remote, &[]);
        assert!(m.is_noop());
        assert_eq!(m, Merge::default());
    }

    #[test]
    fn one_side_wins_per_field() {
        let b = base();
        let mut local = b.local.clone();
        local.title = "new title".into();
        let mut remote = b.remote.clone();
        remote.body = "new body".into();
        remote.closed = true;
        let m = merge(&b, &local, &remote, &[]);
        assert_eq!(m.push, vec![Field::Title]);
        assert_eq!(m.pull, vec![Field::Body, Field::State]);
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn same_field_both_sides_is_a_conflict() {
        let b = base();
        let mut local = b.local.clone();
        local.title = "mine".into();
        let mut remote = b.remote.clone();
        remote.title = "theirs".into();
        let m = merge(&b, &local, &remote, &[]);
        assert_eq!(m.conflicts, vec![Field::Title]);
        assert!(m.push.is_empty() && m.pull.is_empty());
    }

    #[test]
    fn same_change_on_both_sides_agrees() {
        let b = base();
        let mut local = b.local.clone();
        local.closed = true;
        let mut remote = b.remote.clone();
        remote.closed = true;
        let m = merge(&b, &local, &remote, &[]);
        assert_eq!(m.agreed, vec![Field::State]);
        assert!(m.is_noop());
    }

    #[test]
    fn skipped_fields_stay_untouched() {
        let b = base();
        let mut local = b.local.clone();
        local.title = "mine".into();
        let mut remote = b.remote.clone();
        remote.title = "theirs".into();
        let m = merge(&b, &local, &remote, &[Field::Title]);
        assert!(m.is_noop());
    }

    #[test]
    fn per_side_base_absorbs_normalisation() {
        // The remote body was truncated on push: it differs from the local body, but
        // neither side changed since the snapshot, so nothing happens.
        let mut b = base();
        b.local.body = "x".repeat(10);
        b.remote.body = "xxx…".into();
        let m = merge(&b, &b.local.clone(), &b.remote.clone(), &[]);
        assert!(m.is_noop());
    }

    #[test]
    fn labels_merge_as_sets() {
        let b = base();
        let mut local = b.local.clone();
        local.labels.insert("mamba".into());
        local.labels.remove("cuda");
        let mut remote = b.remote.clone();
        remote.labels.insert("urgent".into());
        let m = merge(&b, &local, &remote, &[]);
        let merged: Vec<_> = m.merged_labels.unwrap().into_iter().collect();
        assert_eq!(merged, vec!["mamba", "task", "urgent"]);
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn assignee_conflicts_and_pulls() {
        let b = base();
        let mut remote = b.remote.clone();
        remote.assignee = Some("bob".into());
        let m = merge(&b, &b.local, &remote, &[]);
        assert_eq!(m.pull, vec![Field::Assignee]);
        let mut local = b.local.clone();
        local.assignee = Some("ada".into());
        let m = merge(&b, &local, &remote, &[]);
        assert_eq!(m.conflicts, vec![Field::Assignee]);
    }

    #[test]
    fn field_text_roundtrip() {
        let mut p = proj("t", "b", true, &["a", "b"]);
        p.assignee = Some("x".into());
        let mut q = Proj::default();
        for f in Field::ALL {
            q.set(f, &p.get(f));
        }
        assert_eq!(p, q);
        assert_eq!("status".parse::<Field>().unwrap(), Field::State);
        assert!("colour".parse::<Field>().is_err());
    }
}
