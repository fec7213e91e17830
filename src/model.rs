//! The notebook's vocabulary: item kinds, user-facing IDs (`T-12`, `R-3`), statuses,
//! link relations and the plain data structs the store hands out.
use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The four kinds of notebook item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Task,
    Paper,
    Idea,
    Experiment,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Task, Kind::Paper, Kind::Idea, Kind::Experiment];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Paper => "paper",
            Kind::Idea => "idea",
            Kind::Experiment => "experiment",
        }
    }

    pub fn prefix(self) -> char {
        match self {
            Kind::Task => 'T',
            Kind::Paper => 'P',
            Kind::Idea => 'I',
            Kind::Experiment => 'E',
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Task => "Tasks",
            Kind::Paper => "Papers",
            Kind::Idea => "Ideas",
            Kind::Experiment => "Experiments",
        }
    }

    /// Allowed statuses; the first is the default for new items.
    pub fn statuses(self) -> &'static [&'static str] {
        match self {
            Kind::Task => &["todo", "doing", "done", "dropped"],
            Kind::Paper => &["to-read", "reading", "read", "skipped"],
            Kind::Idea => &["proposed", "exploring", "adopted", "rejected"],
            Kind::Experiment => &["planned", "running", "done", "abandoned"],
        }
    }

    pub fn default_status(self) -> &'static str {
        self.statuses()[0]
    }

    /// Statuses that count as finished (closed on GitHub, hidden by `list --open`).
    pub fn is_closed_status(self, status: &str) -> bool {
        let s = self.statuses();
        s[2..].contains(&status)
    }

    pub fn check_status(self, status: &str) -> Result<(), Error> {
        if self.statuses().contains(&status) {
            Ok(())
        } else {
            Err(Error::InvalidStatus {
                kind: self,
                status: status.to_string(),
                allowed: self.statuses().join(", "),
            })
        }
    }
}

impl Kind {
    /// "a task", "an idea", "an experiment", "a paper".
    pub fn with_article(self) -> String {
        match self {
            Kind::Idea | Kind::Experiment => format!("an {self}"),
            Kind::Task | Kind::Paper => format!("a {self}"),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "task" | "tasks" | "t" => Ok(Kind::Task),
            "paper" | "papers" | "p" => Ok(Kind::Paper),
            "idea" | "ideas" | "i" => Ok(Kind::Idea),
            "experiment" | "experiments" | "exp" | "e" => Ok(Kind::Experiment),
            _ => Err(Error::InvalidKind(s.to_string())),
        }
    }
}

/// A user-facing item ID such as `T-12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId {
    pub kind: Kind,
    pub num: i64,
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.kind.prefix(), self.num)
    }
}

impl FromStr for ItemId {
    type Err = Error;
    /// Accepts `T-12`, `t-12` and `T12`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidId(s.to_string());
        let mut chars = s.trim().chars();
        let kind = match chars.next().map(|c| c.to_ascii_uppercase()) {
            Some('T') => Kind::Task,
            Some('P') => Kind::Paper,
            Some('I') => Kind::Idea,
            Some('E') => Kind::Experiment,
            _ => return Err(bad()),
        };
        let rest = chars.as_str();
        let digits = rest.strip_prefix('-').unwrap_or(rest);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let num = digits.parse().map_err(|_| bad())?;
        Ok(ItemId { kind, num })
    }
}

impl Serialize for ItemId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A run ID such as `R-3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R-{}", self.0)
    }
}

impl FromStr for RunId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        let rest = t
            .strip_prefix('R')
            .or_else(|| t.strip_prefix('r'))
            .ok_or_else(|| Error::InvalidId(s.to_string()))?;
        let digits = rest.strip_prefix('-').unwrap_or(rest);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidId(s.to_string()));
        }
        digits
            .parse()
            .map(RunId)
            .map_err(|_| Error::InvalidId(s.to_string()))
    }
}

impl Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Anything the CLI can `show`: an item or a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyId {
    Item(ItemId),
    Run(RunId),
}

impl FromStr for AnyId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.trim().starts_with(['R', 'r']) {
            s.parse().map(AnyId::Run)
        } else {
            s.parse().map(AnyId::Item)
        }
    }
}

/// Typed link relations. Each reads "SOURCE rel TARGET"; the inverse is how the
/// same link reads from the target's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    RelatesTo,
    MotivatedBy,
    Tests,
    For,
    Cites,
    BuildsOn,
    Implements,
    Blocks,
    Supersedes,
}

impl Relation {
    pub const ALL: [Relation; 9] = [
        Relation::RelatesTo,
        Relation::MotivatedBy,
        Relation::Tests,
        Relation::For,
        Relation::Cites,
        Relation::BuildsOn,
        Relation::Implements,
        Relation::Blocks,
        Relation::Supersedes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Relation::RelatesTo => "relates-to",
            Relation::MotivatedBy => "motivated-by",
            Relation::Tests => "tests",
            Relation::For => "for",
            Relation::Cites => "cites",
            Relation::BuildsOn => "builds-on",
            Relation::Implements => "implements",
            Relation::Blocks => "blocks",
            Relation::Supersedes => "supersedes",
        }
    }

    /// How the link reads from the other end.
    pub fn inverse_label(self) -> &'static str {
        match self {
            Relation::RelatesTo => "relates-to",
            Relation::MotivatedBy => "motivates",
            Relation::Tests => "tested-by",
            Relation::For => "has",
            Relation::Cites => "cited-by",
            Relation::BuildsOn => "built-on-by",
            Relation::Implements => "implemented-by",
            Relation::Blocks => "blocked-by",
            Relation::Supersedes => "superseded-by",
        }
    }

    /// The relation a user most likely means when linking `from` to `to` without `--as`.
    pub fn default_for(from: Kind, to: Kind) -> Relation {
        match (from, to) {
            (Kind::Idea, Kind::Paper) => Relation::MotivatedBy,
            (Kind::Experiment, Kind::Idea) => Relation::Tests,
            (Kind::Task, Kind::Experiment) | (Kind::Task, Kind::Idea) => Relation::For,
            (Kind::Paper, Kind::Paper) => Relation::Cites,
            _ => Relation::RelatesTo,
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Relation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Relation::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::InvalidRelation {
                rel: s.to_string(),
                allowed: Relation::ALL.map(|r| r.as_str()).join(", "),
            })
    }
}

/// One notebook item with every field. Kind-specific fields are `None` on other kinds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub id: ItemId,
    #[serde(skip)]
    pub rowid: i64,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    pub status: String,
    pub tags: Vec<String>,
    pub author: String,
    pub created_at: String,
    pub updated_at: String,
    pub archived: bool,
    #[serde(flatten)]
    pub fields: Fields,
}

impl Item {
    /// The page to open for a paper: its URL, else arXiv, else DOI.
    pub fn paper_url(&self) -> Option<String> {
        let f = &self.fields;
        f.url
            .clone()
            .or_else(|| {
                f.arxiv_id
                    .as_ref()
                    .map(|a| format!("https://arxiv.org/abs/{a}"))
            })
            .or_else(|| f.doi.as_ref().map(|d| format!("https://doi.org/{d}")))
    }
}

/// The editable fields beyond title/body/status/tags. Which ones apply depends on the kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    // Task
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    // Paper
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authors: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arxiv_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doi: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bibtex_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bibtex: Option<String>,
    // Experiment
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypothesis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
}

/// Field names per kind, in display order. Used for validation and the edit view.
pub fn fields_for(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Task => &["assignee", "priority", "due"],
        Kind::Paper => &[
            "authors",
            "year",
            "venue",
            "arxiv_id",
            "doi",
            "url",
            "bibtex_key",
            "bibtex",
        ],
        Kind::Idea => &[],
        Kind::Experiment => &["hypothesis", "conclusion"],
    }
}

impl Fields {
    /// (name, value-as-text) for every set field, in a fixed order.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut push = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        push("assignee", self.assignee.clone());
        push("priority", self.priority.map(|p| p.to_string()));
        push("due", self.due.clone());
        push("authors", self.authors.clone());
        push("year", self.year.map(|y| y.to_string()));
        push("venue", self.venue.clone());
        push("arxiv_id", self.arxiv_id.clone());
        push("doi", self.doi.clone());
        push("url", self.url.clone());
        push("bibtex_key", self.bibtex_key.clone());
        push("bibtex", self.bibtex.clone());
        push("hypothesis", self.hypothesis.clone());
        push("conclusion", self.conclusion.clone());
        out
    }

    /// Sets a field from text, checking it belongs to `kind` and parses.
    pub fn set(&mut self, kind: Kind, name: &str, value: Option<&str>) -> Result<(), Error> {
        if !fields_for(kind).contains(&name) {
            return Err(Error::InvalidField {
                kind,
                field: name.to_string(),
                allowed: fields_for(kind).join(", "),
            });
        }
        let text = value.map(str::to_string).filter(|v| !v.is_empty());
        // An integer in `range`; `expected` says so in the error.
        let int = |v: &Option<String>,
                   range: std::ops::RangeInclusive<i64>,
                   expected: &'static str|
         -> Result<Option<i64>, Error> {
            v.as_deref()
                .map(|s| {
                    s.trim()
                        .parse()
                        .ok()
                        .filter(|n| range.contains(n))
                        .ok_or_else(|| Error::InvalidValue {
                            field: name.to_string(),
                            value: s.to_string(),
                            expected,
                        })
                })
                .transpose()
        };
        match name {
            "assignee" => self.assignee = text,
            "priority" => self.priority = int(&text, 1..=5, "an integer from 1 (highest) to 5")?,
            "due" => {
                if let Some(d) = &text {
                    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                        Error::InvalidValue {
                            field: "due".into(),
                            value: d.clone(),
                            expected: "a date YYYY-MM-DD",
                        }
                    })?;
                }
                self.due = text
            }
            "authors" => self.authors = text,
            "year" => self.year = int(&text, 1000..=2100, "a year from 1000 to 2100")?,
            "venue" => self.venue = text,
            "arxiv_id" => self.arxiv_id = text,
            "doi" => self.doi = text,
            "url" => self.url = text,
            "bibtex_key" => self.bibtex_key = text,
            "bibtex" => self.bibtex = text,
            "hypothesis" => self.hypothesis = text,
            "conclusion" => self.conclusion = text,
            _ => unreachable!("checked against fields_for"),
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.entries()
            .into_iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Fields that are set but do not belong to `kind`.
    pub fn foreign_to(&self, kind: Kind) -> Vec<&'static str> {
        self.entries()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !fields_for(kind).contains(k))
            .collect()
    }
}

/// What a new item starts with.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub kind: Kind,
    pub title: String,
    pub body: String,
    pub status: Option<String>,
    pub tags: Vec<String>,
    pub fields: Fields,
}

impl NewItem {
    pub fn new(kind: Kind, title: impl Into<String>) -> Self {
        NewItem {
            kind,
            title: title.into(),
            body: String::new(),
            status: None,
            tags: Vec::new(),
            fields: Fields::default(),
        }
    }
}

/// A change to an item: each `Some` replaces the field.
#[derive(Debug, Clone, Default)]
pub struct ItemPatch {
    pub title: Option<String>,
    pub body: Option<String>,
    pub status: Option<String>,
    /// Replaces the whole tag set.
    pub tags: Option<Vec<String>>,
    /// (field name, new value or None to clear)
    pub fields: Vec<(String, Option<String>)>,
}

impl ItemPatch {
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.body.is_none()
            && self.status.is_none()
            && self.tags.is_none()
            && self.fields.is_empty()
    }
}

/// A link as seen from one item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkView {
    /// The relation as it reads from this item (`motivated-by` or `motivates`).
    pub label: String,
    pub relation: Relation,
    /// True when this item is the link's source.
    pub outgoing: bool,
    pub other: ItemId,
    pub other_title: String,
    pub other_status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comment {
    pub id: i64,
    pub author: String,
    pub body: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub author: String,
    pub at: String,
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Normalises a tag: trimmed, lower-case, inner whitespace as `-`.
pub fn normalize_tag(tag: &str) -> Result<String, Error> {
    let t = tag
        .trim()
        .trim_start_matches('#')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-")
        .to_lowercase();
    if t.is_empty() || t.contains(',') {
        return Err(Error::InvalidTag(tag.to_string()));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_print() {
        let id: ItemId = "t-12".parse().unwrap();
        assert_eq!(
            id,
            ItemId {
                kind: Kind::Task,
                num: 12
            }
        );
        assert_eq!(id.to_string(), "T-12");
        assert_eq!("E7".parse::<ItemId>().unwrap().to_string(), "E-7");
        for bad in ["X-1", "T-", "T-1a", "", "T--1", "12"] {
            assert!(bad.parse::<ItemId>().is_err(), "{bad}");
        }
        assert_eq!("R-4".parse::<AnyId>().unwrap(), AnyId::Run(RunId(4)));
        assert_eq!(
            "P-4".parse::<AnyId>().unwrap(),
            AnyId::Item(ItemId {
                kind: Kind::Paper,
                num: 4
            })
        );
    }

    #[test]
    fn statuses_are_checked_per_kind() {
        assert!(Kind::Task.check_status("doing").is_ok());
        let err = Kind::Task.check_status("adopted").unwrap_err().to_string();
        assert!(err.contains("todo, doing, done, dropped"), "{err}");
        assert!(Kind::Idea.is_closed_status("rejected"));
        assert!(!Kind::Idea.is_closed_status("exploring"));
    }

    #[test]
    fn fields_reject_other_kinds_and_bad_values() {
        let mut f = Fields::default();
        assert!(f.set(Kind::Paper, "year", Some("2023")).is_ok());
        assert_eq!(f.year, Some(2023));
        assert!(f.set(Kind::Paper, "year", Some("twenty")).is_err());
        assert!(f.set(Kind::Task, "year", Some("2023")).is_err());
        assert!(f.set(Kind::Task, "due", Some("2026-02-30")).is_err());
        assert!(f.set(Kind::Task, "due", Some("2026-02-28")).is_ok());
    }

    #[test]
    fn tags_normalise() {
        assert_eq!(
            normalize_tag(" #Selective Scan ").unwrap(),
            "selective-scan"
        );
        assert!(normalize_tag("  ").is_err());
    }
}
