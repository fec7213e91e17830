//! The app state and the pure `update(state, action) -> effects`. No I/O here: database
//! work is requested through `Effect::Send`, everything else through other effects.
use std::collections::{HashMap, HashSet};

use labbook::model::{Item, ItemId, Kind, Relation, RunId};
use labbook::store::Run;
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};
use ratatui::layout::Rect;

use super::action::{Action, Effect};
use super::form::{FormState, FormTarget};
use super::keymap::{Keymap, text_action};
use super::theme::Theme;
use super::views::layout::{self, Areas};
use super::worker::{Data, Detail, Reply, Request};

mod modes;
mod normal;
use modes::*;
use normal::*;

pub const TABS: [&str; 5] = ["Tasks", "Papers", "Ideas", "Experiments", "Runs"];
pub const RUNS_TAB: usize = 4;

pub fn tab_kind(tab: usize) -> Option<Kind> {
    Kind::ALL.get(tab).copied()
}

pub fn tab_of(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// What a list row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sel {
    Item(ItemId),
    Run(RunId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    List,
    Detail,
}

/// Sort keys per tab (the `o` key cycles them).
pub fn sort_keys(tab: usize) -> &'static [&'static str] {
    match tab {
        0 => &["id", "title", "status", "priority", "assignee", "updated"],
        1 => &["id", "title", "status", "year", "updated"],
        2 | 3 => &["id", "title", "status", "updated"],
        _ => &["id", "name", "status", "created"],
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListView {
    pub selected: usize,
    pub offset: usize,
    pub sort: usize,
    pub reverse: bool,
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchState {
    pub query: String,
    pub hits: Vec<(ItemId, String, String)>,
    pub selected: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PickerState {
    pub from: ItemId,
    pub query: String,
    pub matches: Vec<ItemId>,
    pub selected: usize,
    /// None: the usual relation for the two kinds.
    pub relation: Option<Relation>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PromptKind {
    Tag(ItemId),
    Comment(ItemId),
    Import,
    /// Start a detached run: a config file, optionally followed by `--set k=v` etc.
    LaunchRun,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromptState {
    pub kind: PromptKind,
    pub input: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConfirmKind {
    Archive(ItemId),
    Delete(ItemId),
    Discard,
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    Filter,
    /// Help, scrolled by this many lines.
    Help(u16),
    Search(SearchState),
    Picker(PickerState),
    Form(FormState),
    Prompt(PromptState),
    Confirm(ConfirmKind, Box<Mode>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loc {
    pub tab: usize,
    pub sel: Option<Sel>,
}

/// The one-line message in the status bar until the next key: what happened, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    pub text: String,
    /// Drawn in the error style.
    pub is_error: bool,
}

pub struct App {
    pub db_label: String,
    pub keymap: Keymap,
    pub theme: Theme,
    pub tab: usize,
    /// Items per kind, in store order (by number).
    pub items: [Vec<Item>; 4],
    pub link_counts: HashMap<i64, i64>,
    pub runs: Vec<Run>,
    pub sync: labbook::github::SyncSummary,
    pub views: [ListView; 5],
    /// Row indices of the current tab after filter and sort.
    pub visible: Vec<usize>,
    /// FTS hits for the current filter (query, ids); body matches join fuzzy title matches.
    pub fts: Option<(String, HashSet<ItemId>)>,
    pub focus: Focus,
    pub link_sel: usize,
    pub detail: Option<(Item, Detail)>,
    /// Curves and log tail of the selected run.
    pub run_view: Option<super::worker::RunView>,
    /// Runs marked for comparison (space/x on the Runs tab), in marking order.
    pub marked_runs: Vec<RunId>,
    /// The comparison of the marked runs, when two or more are marked.
    pub compare_view: Option<super::worker::CompareView>,
    /// Run curves on a log y axis.
    pub log_scale: bool,
    /// Moving-average window of the run curves (1 = raw).
    pub smoothing: usize,
    pub detail_scroll: u16,
    pub mode: Mode,
    pub back: Vec<Loc>,
    pub message: Option<StatusMessage>,
    pub loaded: bool,
    pub size: Rect,
    /// Select this item when the next data arrives (after an add).
    pending_select: Option<ItemId>,
    matcher: Matcher,
}

impl App {
    pub fn new(db_label: String, keymap: Keymap, theme: Theme) -> App {
        App {
            db_label,
            keymap,
            theme,
            tab: 0,
            items: Default::default(),
            link_counts: HashMap::new(),
            runs: Vec::new(),
            sync: Default::default(),
            views: Default::default(),
            visible: Vec::new(),
            fts: None,
            focus: Focus::List,
            link_sel: 0,
            detail: None,
            run_view: None,
            marked_runs: Vec::new(),
            compare_view: None,
            log_scale: false,
            smoothing: 1,
            detail_scroll: 0,
            mode: Mode::Normal,
            back: Vec::new(),
            message: None,
            loaded: false,
            size: Rect::new(0, 0, 80, 24),
            pending_select: None,
            matcher: Matcher::new(Config::DEFAULT),
        }
    }

    pub fn areas(&self) -> Areas {
        layout::areas(self.size)
    }

    pub fn total_items(&self) -> usize {
        self.items.iter().map(Vec::len).sum()
    }

    pub fn count(&self, tab: usize) -> usize {
        if tab == RUNS_TAB {
            self.runs.len()
        } else {
            self.items[tab].len()
        }
    }

    pub fn view(&self) -> &ListView {
        &self.views[self.tab]
    }

    /// The item behind a row of the current tab's `visible` list.
    pub fn item_at(&self, row: usize) -> Option<&Item> {
        let i = *self.visible.get(row)?;
        self.items.get(self.tab)?.get(i)
    }

    pub fn run_at(&self, row: usize) -> Option<&Run> {
        if self.tab != RUNS_TAB {
            return None;
        }
        self.runs.get(*self.visible.get(row)?)
    }

    pub fn selected(&self) -> Option<Sel> {
        let row = self.view().selected;
        if self.tab == RUNS_TAB {
            self.run_at(row).map(|r| Sel::Run(r.id))
        } else {
            self.item_at(row).map(|i| Sel::Item(i.id))
        }
    }

    pub fn selected_item(&self) -> Option<&Item> {
        if self.tab == RUNS_TAB {
            return None;
        }
        self.item_at(self.view().selected)
    }

    pub fn find_item(&self, id: ItemId) -> Option<&Item> {
        self.items[tab_of(id.kind)].iter().find(|i| i.id == id)
    }

    /// The detail for the selected item, if loaded and current.
    pub fn current_detail(&self) -> Option<&Detail> {
        let sel = self.selected_item()?;
        self.detail
            .as_ref()
            .filter(|(i, _)| i.id == sel.id)
            .map(|(_, d)| d)
    }

    /// Links of the selected item in display order (grouped by label).
    pub fn links(&self) -> Vec<&labbook::model::LinkView> {
        let mut v: Vec<_> = self
            .current_detail()
            .map(|d| d.links.iter().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.label.cmp(&b.label).then(a.other.cmp(&b.other)));
        v
    }

    /// Rows the list shows at once.
    pub fn page(&self) -> usize {
        (self.areas().list.height.saturating_sub(3) as usize).max(1)
    }

    /// Recomputes `visible` for the current tab: filter, then sort.
    pub fn refresh_visible(&mut self) {
        let tab = self.tab;
        let v = &self.views[tab];
        let q = v.filter.trim().to_string();
        let mut rows: Vec<usize> = if tab == RUNS_TAB {
            (0..self.runs.len()).collect()
        } else {
            (0..self.items[tab].len()).collect()
        };
        if !q.is_empty() {
            let pattern = Pattern::parse(&q, CaseMatching::Ignore, Normalization::Smart);
            let mut buf = Vec::new();
            let fts = self.fts.as_ref().filter(|(fq, _)| *fq == q).map(|(_, s)| s);
            let matcher = &mut self.matcher;
            // A query that is an ID (`t-12`, `R3`) also matches that row.
            let item_id = q.parse::<ItemId>().ok();
            let run_id = q.parse::<RunId>().ok();
            rows.retain(|&i| {
                if tab == RUNS_TAB {
                    let r = &self.runs[i];
                    let name = r.name.as_deref().or(r.config_path.as_deref()).unwrap_or("");
                    return pattern
                        .score(Utf32Str::new(name, &mut buf), matcher)
                        .is_some()
                        || run_id == Some(r.id);
                }
                let it = &self.items[tab][i];
                pattern
                    .score(Utf32Str::new(&it.title, &mut buf), matcher)
                    .is_some()
                    || fts.is_some_and(|s| s.contains(&it.id))
                    || item_id == Some(it.id)
            });
        }
        let key = sort_keys(tab)[v.sort.min(sort_keys(tab).len() - 1)];
        if tab == RUNS_TAB {
            let runs = &self.runs;
            rows.sort_by(|&a, &b| {
                let (a, b) = (&runs[a], &runs[b]);
                match key {
                    "name" => a.name.cmp(&b.name),
                    "status" => a.status.as_str().cmp(b.status.as_str()),
                    "created" => a.created_at.cmp(&b.created_at),
                    _ => a.id.cmp(&b.id),
                }
                .then(a.id.cmp(&b.id))
            });
        } else {
            let items = &self.items[tab];
            let kind = Kind::ALL[tab];
            let status_rank = |s: &str| kind.statuses().iter().position(|x| *x == s);
            rows.sort_by(|&a, &b| {
                let (a, b) = (&items[a], &items[b]);
                match key {
                    "title" => a.title.to_lowercase().cmp(&b.title.to_lowercase()),
                    "status" => status_rank(&a.status).cmp(&status_rank(&b.status)),
                    "priority" => (a.fields.priority.is_none(), a.fields.priority)
                        .cmp(&(b.fields.priority.is_none(), b.fields.priority)),
                    "assignee" => a.fields.assignee.cmp(&b.fields.assignee),
                    "year" => b.fields.year.cmp(&a.fields.year),
                    "updated" => b.updated_at.cmp(&a.updated_at),
                    _ => a.id.num.cmp(&b.id.num),
                }
                .then(a.id.num.cmp(&b.id.num))
            });
        }
        if v.reverse {
            rows.reverse();
        }
        self.visible = rows;
        self.clamp();
    }

    /// Keeps the selection in range and visible.
    fn clamp(&mut self) {
        let n = self.visible.len();
        let page = self.page();
        let v = &mut self.views[self.tab];
        v.selected = v.selected.min(n.saturating_sub(1));
        if v.selected < v.offset {
            v.offset = v.selected;
        } else if v.selected >= v.offset + page {
            v.offset = v.selected + 1 - page;
        }
        v.offset = v.offset.min(n.saturating_sub(page.min(n)));
    }

    fn select_row(&mut self, row: usize) {
        self.views[self.tab].selected = row;
        self.clamp();
    }

    /// Puts the selection on `sel` in the current tab if it is visible.
    fn select_sel(&mut self, sel: Sel) -> bool {
        let pos = match sel {
            Sel::Item(id) => self.visible.iter().position(|&i| {
                self.items
                    .get(self.tab)
                    .and_then(|v| v.get(i))
                    .is_some_and(|it| it.id == id)
            }),
            Sel::Run(id) => self.visible.iter().position(|&i| {
                self.tab == RUNS_TAB && self.runs.get(i).is_some_and(|r| r.id == id)
            }),
        };
        match pos {
            Some(p) => {
                self.select_row(p);
                true
            }
            None => false,
        }
    }

    /// Goes to a location: its tab, the item (clearing a filter that hides it).
    fn goto(&mut self, loc: Loc) {
        self.tab = loc.tab;
        self.focus = Focus::List;
        self.link_sel = 0;
        self.detail_scroll = 0;
        self.refresh_visible();
        if let Some(sel) = loc.sel
            && !self.select_sel(sel)
        {
            self.views[self.tab].filter.clear();
            self.refresh_visible();
            self.select_sel(sel);
        }
    }

    fn here(&self) -> Loc {
        Loc {
            tab: self.tab,
            sel: self.selected(),
        }
    }

    /// Follows to an item, remembering where we were.
    fn jump(&mut self, id: ItemId) {
        self.back.push(self.here());
        self.goto(Loc {
            tab: tab_of(id.kind),
            sel: Some(Sel::Item(id)),
        });
    }

    /// Asks the worker for the selected item's detail when it is not the one shown.
    fn detail_effects(&self) -> Vec<Effect> {
        match self.selected() {
            Some(Sel::Item(id)) if self.detail.as_ref().is_none_or(|(i, _)| i.id != id) => {
                vec![Effect::Send(Request::Detail(id))]
            }
            Some(Sel::Run(id)) if self.run_view.as_ref().is_none_or(|v| v.run != id) => {
                vec![Effect::Send(Request::RunView(id))]
            }
            _ => Vec::new(),
        }
    }

    fn info(&mut self, msg: impl Into<String>) {
        self.message = Some(StatusMessage {
            text: msg.into(),
            is_error: false,
        });
    }

    fn error(&mut self, msg: impl Into<String>) {
        self.message = Some(StatusMessage {
            text: msg.into(),
            is_error: true,
        });
    }

    fn apply_data(&mut self, data: Data) {
        let keep = self.selected();
        let mut items: [Vec<Item>; 4] = Default::default();
        for it in data.items {
            items[tab_of(it.kind)].push(it);
        }
        self.items = items;
        self.link_counts = data.link_counts;
        self.runs = data.runs;
        self.sync = data.sync;
        self.loaded = true;
        self.refresh_visible();
        if let Some(id) = self.pending_select.take() {
            self.goto(Loc {
                tab: tab_of(id.kind),
                sel: Some(Sel::Item(id)),
            });
        } else if let Some(sel) = keep {
            self.select_sel(sel);
        }
    }

    /// Rank items of all kinds against the picker query.
    fn pick_matches(&mut self, query: &str, exclude: ItemId) -> Vec<ItemId> {
        let pattern = Pattern::parse(query, CaseMatching::Ignore, Normalization::Smart);
        let mut buf = Vec::new();
        let mut scored: Vec<(u32, ItemId)> = Vec::new();
        for it in self.items.iter().flatten().filter(|i| i.id != exclude) {
            let text = format!("{} {} {}", it.id, it.title, it.tags.join(" "));
            if query.trim().is_empty() {
                scored.push((0, it.id));
            } else if let Some(s) = pattern.score(Utf32Str::new(&text, &mut buf), &mut self.matcher)
            {
                scored.push((s, it.id));
            }
        }
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(200).map(|(_, id)| id).collect()
    }

    /// The action a key stands for in the current mode.
    pub fn action_for_key(&self, e: &crossterm::event::KeyEvent) -> Option<Action> {
        use crossterm::event::KeyCode;
        match &self.mode {
            Mode::Normal => self.keymap.action(e),
            Mode::Help(_) => Some(self.keymap.action(e).unwrap_or(Action::Cancel)),
            Mode::Confirm(..) => Some(match e.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => Action::Submit,
                _ => Action::Cancel,
            }),
            _ => text_action(e),
        }
    }
}

/// Status after `s` in the kind's cycle.
pub fn next_status(kind: Kind, status: &str) -> &'static str {
    let s = kind.statuses();
    let i = s
        .iter()
        .position(|x| *x == status)
        .map_or(0, |i| (i + 1) % s.len());
    s[i]
}

/// The pure heart of the TUI: applies an action, returns the effects to perform.
pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    // Actions that mean the same in every mode.
    match action {
        Action::Resize(w, h) => {
            app.size = Rect::new(0, 0, w, h);
            app.clamp();
            return Vec::new();
        }
        Action::Worker(reply) => return on_reply(app, reply),
        _ => {}
    }
    let mode = std::mem::replace(&mut app.mode, Mode::Normal);
    match mode {
        Mode::Normal => normal(app, action),
        Mode::Help(s) => {
            let s = match action {
                Action::Down | Action::ScrollDetailDown => Some(s.saturating_add(1)),
                Action::Up | Action::ScrollDetailUp => Some(s.saturating_sub(1)),
                Action::PageDown => Some(s.saturating_add(10)),
                Action::PageUp => Some(s.saturating_sub(10)),
                Action::Top => Some(0),
                _ => None,
            };
            if let Some(s) = s {
                app.mode = Mode::Help(s);
            }
            Vec::new()
        }
        Mode::Filter => filter(app, action),
        Mode::Search(s) => search(app, s, action),
        Mode::Picker(p) => picker(app, p, action),
        Mode::Form(f) => form(app, f, action),
        Mode::Prompt(p) => prompt(app, p, action),
        Mode::Confirm(what, prev) => confirm(app, what, *prev, action),
    }
}

fn on_reply(app: &mut App, reply: Reply) -> Vec<Effect> {
    match reply {
        Reply::Data(d) => {
            app.apply_data(d);
            let mut fx = app.detail_effects();
            if app.tab == RUNS_TAB && app.marked_runs.len() >= 2 {
                fx.push(Effect::Send(Request::CompareRuns(app.marked_runs.clone())));
            }
            // A selected run that is still going gets fresh curves with every reload.
            if fx.is_empty()
                && let Some(Sel::Run(id)) = app.selected()
                && app
                    .runs
                    .iter()
                    .any(|r| r.id == id && !r.status.is_finished())
            {
                fx.push(Effect::Send(Request::RunView(id)));
            }
            return fx;
        }
        Reply::RunView(v) => {
            app.run_view = Some(v);
        }
        Reply::Compare(v) => {
            if v.runs == app.marked_runs {
                app.compare_view = Some(v);
            }
        }
        Reply::Detail(id, item, d) => {
            if app.detail.as_ref().is_none_or(|(i, _)| i.id != id) {
                app.link_sel = 0;
                app.detail_scroll = 0;
            }
            app.detail = Some((item, d));
            let n = app.links().len();
            app.link_sel = app.link_sel.min(n.saturating_sub(1));
        }
        Reply::Done { msg, select } => {
            if let Mode::Form(f) = &app.mode
                && f.saving
            {
                app.mode = Mode::Normal;
            }
            app.pending_select = select.filter(|id| app.selected() != Some(Sel::Item(*id)));
            app.info(msg);
        }
        Reply::Failed(msg) => {
            if let Mode::Form(f) = &mut app.mode
                && f.saving
            {
                f.saving = false;
                f.error = Some(msg);
            } else {
                app.error(msg);
            }
        }
        Reply::SearchHits {
            query,
            for_filter,
            hits,
        } => {
            if for_filter {
                if app.view().filter.trim() == query {
                    app.fts = Some((query, hits.iter().map(|h| h.0).collect()));
                    app.refresh_visible();
                    return app.detail_effects();
                }
            } else if let Mode::Search(s) = &mut app.mode
                && s.query.trim() == query
            {
                s.hits = hits;
                s.selected = 0;
            }
        }
    }
    Vec::new()
}
