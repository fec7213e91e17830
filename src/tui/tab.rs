//! The list tabs: one per item kind, then runs. Its own module so that both the state and
//! the views (layout included) can name a tab without depending on each other.
use std::ops::{Index, IndexMut};

use labbook::model::Kind;

/// A tab of the tab bar, in the order drawn (and numbered 1–5 by the keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tab {
    #[default]
    Tasks,
    Papers,
    Ideas,
    Experiments,
    Runs,
}

impl Tab {
    pub const COUNT: usize = 5;
    pub const ALL: [Tab; Tab::COUNT] = [
        Tab::Tasks,
        Tab::Papers,
        Tab::Ideas,
        Tab::Experiments,
        Tab::Runs,
    ];

    /// Position in the tab bar, from 0.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The number shown before the label (the default key that selects the tab).
    pub fn number(self) -> usize {
        self.index() + 1
    }

    /// The kind of item the tab lists; `None` for runs.
    pub fn kind(self) -> Option<Kind> {
        match self {
            Tab::Tasks => Some(Kind::Task),
            Tab::Papers => Some(Kind::Paper),
            Tab::Ideas => Some(Kind::Idea),
            Tab::Experiments => Some(Kind::Experiment),
            Tab::Runs => None,
        }
    }

    pub fn from_kind(kind: Kind) -> Tab {
        match kind {
            Kind::Task => Tab::Tasks,
            Kind::Paper => Tab::Papers,
            Kind::Idea => Tab::Ideas,
            Kind::Experiment => Tab::Experiments,
        }
    }

    /// The tab to the right, wrapping around.
    pub fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::COUNT]
    }

    /// The tab to the left, wrapping around.
    pub fn prev(self) -> Tab {
        Tab::ALL[(self.index() + Tab::COUNT - 1) % Tab::COUNT]
    }

    pub fn label(self) -> &'static str {
        match self {
            Tab::Tasks => "Tasks",
            Tab::Papers => "Papers",
            Tab::Ideas => "Ideas",
            Tab::Experiments => "Experiments",
            Tab::Runs => "Runs",
        }
    }

    /// The keys the list can be sorted by (the `o` key cycles them); the first is the default.
    pub fn sort_keys(self) -> &'static [&'static str] {
        match self {
            Tab::Tasks => &["id", "title", "status", "priority", "assignee", "updated"],
            Tab::Papers => &["id", "title", "status", "year", "updated"],
            Tab::Ideas | Tab::Experiments => &["id", "title", "status", "updated"],
            Tab::Runs => &["id", "name", "status", "created"],
        }
    }

    /// The sort key at position `sort` (clamped to the last one).
    pub fn sort_key(self, sort: usize) -> &'static str {
        let keys = self.sort_keys();
        keys[sort.min(keys.len() - 1)]
    }
}

/// One value per tab, indexed by the tab.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerTab<T>([T; Tab::COUNT]);

impl<T> PerTab<T> {
    pub fn from_fn(mut f: impl FnMut(Tab) -> T) -> PerTab<T> {
        PerTab(std::array::from_fn(|i| f(Tab::ALL[i])))
    }
}

impl<T> Index<Tab> for PerTab<T> {
    type Output = T;
    fn index(&self, tab: Tab) -> &T {
        &self.0[tab.index()]
    }
}

impl<T> IndexMut<Tab> for PerTab<T> {
    fn index_mut(&mut self, tab: Tab) -> &mut T {
        &mut self.0[tab.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_follow_the_kinds_then_runs_and_wrap() {
        for (i, tab) in Tab::ALL.into_iter().enumerate() {
            assert_eq!(tab.index(), i);
            assert_eq!(tab.next().prev(), tab);
            if let Some(kind) = tab.kind() {
                assert_eq!(Tab::from_kind(kind), tab);
                assert_eq!(kind.plural(), tab.label());
            }
        }
        assert_eq!(Tab::Runs.next(), Tab::Tasks);
        assert_eq!(Tab::Tasks.prev(), Tab::Runs);
        assert_eq!(Tab::Papers.sort_key(99), "updated");
    }
}
