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
    pub message: Option<(String, bool)>,
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
        self.message = Some((msg.into(), false));
    }

    fn error(&mut self, msg: impl Into<String>) {
        self.message = Some((msg.into(), true));
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

fn needs_item(app: &mut App) -> Option<Item> {
    match app.selected_item() {
        Some(i) => Some(i.clone()),
        None if app.tab == RUNS_TAB => {
            app.error("runs are read-only here");
            None
        }
        None => {
            app.error("nothing selected");
            None
        }
    }
}

fn move_sel(app: &mut App, delta: isize) -> Vec<Effect> {
    if app.focus == Focus::Detail {
        let n = app.links().len();
        if n > 0 {
            app.link_sel = (app.link_sel as isize + delta).clamp(0, n as isize - 1) as usize;
        } else {
            app.detail_scroll = (app.detail_scroll as isize + delta).max(0) as u16;
        }
        return Vec::new();
    }
    let n = app.visible.len();
    if n == 0 {
        return Vec::new();
    }
    let row = (app.view().selected as isize + delta).clamp(0, n as isize - 1) as usize;
    app.select_row(row);
    app.detail_scroll = 0;
    app.link_sel = 0;
    app.detail_effects()
}

fn normal(app: &mut App, action: Action) -> Vec<Effect> {
    app.message = None;
    let page = app.page() as isize;
    match action {
        Action::Quit => return vec![Effect::Quit],
        Action::Help => app.mode = Mode::Help(0),
        Action::Reload => return vec![Effect::Send(Request::LoadAll)],
        Action::NextTab | Action::PrevTab | Action::Tab(_) => {
            let tab = match action {
                Action::NextTab => (app.tab + 1) % TABS.len(),
                Action::PrevTab => (app.tab + TABS.len() - 1) % TABS.len(),
                Action::Tab(t) => t.min(TABS.len() - 1),
                _ => unreachable!(),
            };
            app.tab = tab;
            app.focus = Focus::List;
            app.link_sel = 0;
            app.detail_scroll = 0;
            app.fts = None;
            app.refresh_visible();
            return app.detail_effects();
        }
        Action::Down => return move_sel(app, 1),
        Action::Up => return move_sel(app, -1),
        Action::PageDown => return move_sel(app, page),
        Action::PageUp => return move_sel(app, -page),
        Action::Top => return move_sel(app, -(app.visible.len() as isize)),
        Action::Bottom => return move_sel(app, app.visible.len() as isize),
        Action::ScrollDetailDown => app.detail_scroll = app.detail_scroll.saturating_add(3),
        Action::ScrollDetailUp => app.detail_scroll = app.detail_scroll.saturating_sub(3),
        Action::Enter => {
            if app.focus == Focus::Detail {
                let target = app.links().get(app.link_sel).map(|l| l.other);
                match target {
                    Some(id) => {
                        app.jump(id);
                        return app.detail_effects();
                    }
                    None => app.info("no link to follow"),
                }
            } else if app.selected_item().is_some() {
                app.focus = Focus::Detail;
                if app.links().is_empty() {
                    app.info(format!(
                        "no links; {} links this item",
                        app.keymap.hint("link")
                    ));
                }
            }
        }
        Action::Leave => {
            if app.focus == Focus::Detail {
                app.focus = Focus::List;
            } else if !app.view().filter.is_empty() {
                app.views[app.tab].filter.clear();
                app.fts = None;
                app.refresh_visible();
                return app.detail_effects();
            }
        }
        Action::Back => match app.back.pop() {
            Some(loc) => {
                app.goto(loc);
                return app.detail_effects();
            }
            None => app.info("nothing to go back to"),
        },
        Action::CycleSort => {
            let n = sort_keys(app.tab).len();
            let v = &mut app.views[app.tab];
            v.sort = (v.sort + 1) % n;
            let key = sort_keys(app.tab)[v.sort];
            let keep = app.selected();
            app.refresh_visible();
            if let Some(s) = keep {
                app.select_sel(s);
            }
            app.info(format!("sorted by {key}"));
        }
        Action::ReverseSort => {
            let keep = app.selected();
            app.views[app.tab].reverse ^= true;
            app.refresh_visible();
            if let Some(s) = keep {
                app.select_sel(s);
            }
        }
        Action::Filter => {
            app.focus = Focus::List;
            app.mode = Mode::Filter;
        }
        Action::Search => {
            app.mode = Mode::Search(SearchState {
                query: String::new(),
                hits: Vec::new(),
                selected: 0,
            })
        }
        Action::Add => match tab_kind(app.tab) {
            Some(kind) => app.mode = Mode::Form(FormState::add(kind)),
            None => {
                app.mode = Mode::Prompt(PromptState {
                    kind: PromptKind::LaunchRun,
                    input: "configs/".into(),
                })
            }
        },
        Action::EditFields => {
            if let Some(item) = needs_item(app) {
                app.mode = Mode::Form(FormState::edit(&item));
            }
        }
        Action::EditBody => {
            if let Some(item) = needs_item(app) {
                return vec![Effect::EditInEditor(item.id)];
            }
        }
        Action::CycleStatus if app.tab == RUNS_TAB => {
            // On the Runs tab, space/x marks runs to compare (two or more: overlaid curves).
            let Some(id) = app.run_at(app.view().selected).map(|r| r.id) else {
                return Vec::new();
            };
            if let Some(pos) = app.marked_runs.iter().position(|r| *r == id) {
                app.marked_runs.remove(pos);
            } else {
                app.marked_runs.push(id);
            }
            app.compare_view = None;
            let marked = app
                .marked_runs
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            if app.marked_runs.len() >= 2 {
                app.info(format!("comparing {marked}"));
                return vec![Effect::Send(Request::CompareRuns(app.marked_runs.clone()))];
            }
            app.info(if marked.is_empty() {
                "no runs marked".to_string()
            } else {
                format!("marked {marked}; mark another to compare")
            });
        }
        Action::CycleStatus => {
            if let Some(item) = needs_item(app) {
                let next = next_status(item.kind, &item.status);
                app.info(format!("{} → {next}", item.id));
                return vec![Effect::update(
                    item.id,
                    labbook::model::ItemPatch {
                        status: Some(next.to_string()),
                        ..Default::default()
                    },
                )];
            }
        }
        Action::Tag | Action::Comment => {
            if let Some(item) = needs_item(app) {
                let kind = if matches!(action, Action::Tag) {
                    PromptKind::Tag(item.id)
                } else {
                    PromptKind::Comment(item.id)
                };
                app.mode = Mode::Prompt(PromptState {
                    kind,
                    input: String::new(),
                });
            }
        }
        Action::Link => {
            if let Some(item) = needs_item(app) {
                let matches = app.pick_matches("", item.id);
                app.mode = Mode::Picker(PickerState {
                    from: item.id,
                    query: String::new(),
                    matches,
                    selected: 0,
                    relation: None,
                });
            }
        }
        Action::Archive if app.tab == RUNS_TAB => {
            // On the Runs tab, `d` stops the selected run (graceful, resumable: no question).
            match app.run_at(app.view().selected) {
                Some(r) if !r.status.is_finished() => {
                    let id = r.id;
                    app.info(format!("stopping {id}…"));
                    return vec![Effect::Send(Request::CancelRun(id))];
                }
                Some(r) => app.error(format!("{} is already {}", r.id, r.status)),
                None => app.error("no run selected"),
            }
        }
        Action::Archive | Action::Delete => {
            if let Some(item) = needs_item(app) {
                let what = if matches!(action, Action::Archive) {
                    ConfirmKind::Archive(item.id)
                } else {
                    ConfirmKind::Delete(item.id)
                };
                app.mode = Mode::Confirm(what, Box::new(Mode::Normal));
            }
        }
        Action::ToggleLogScale => {
            app.log_scale = !app.log_scale;
            app.info(if app.log_scale {
                "curves: log scale"
            } else {
                "curves: linear scale"
            });
        }
        Action::CycleSmoothing => {
            app.smoothing = match app.smoothing {
                1 => 10,
                10 => 50,
                _ => 1,
            };
            app.info(format!("curves: smoothing {}", app.smoothing));
        }
        Action::ImportBibtex => {
            app.mode = Mode::Prompt(PromptState {
                kind: PromptKind::Import,
                input: String::new(),
            })
        }
        Action::OpenUrl => {
            if let Some(item) = needs_item(app) {
                let issue = app
                    .detail
                    .as_ref()
                    .filter(|(i, _)| i.id == item.id)
                    .and_then(|(_, d)| d.sync.as_ref())
                    .map(|s| format!("https://github.com/{}/issues/{}", s.repo, s.issue));
                match paper_url(&item).or(issue) {
                    Some(url) => {
                        app.info(format!("opening {url}"));
                        return vec![Effect::OpenUrl(url)];
                    }
                    None => app.error(format!(
                        "{} has no url, arXiv id, DOI or GitHub issue",
                        item.id
                    )),
                }
            }
        }
        Action::Sync => {
            app.info("syncing with GitHub…");
            return vec![Effect::Sync];
        }
        Action::CopyKey => {
            if let Some(item) = needs_item(app) {
                if item.kind != Kind::Paper {
                    app.error("citation keys belong to papers");
                } else {
                    let key = labbook::bibtex::citation_key(&item);
                    app.info(format!("copied {key}"));
                    return vec![Effect::Copy(key)];
                }
            }
        }
        Action::Click { col, row } => return click(app, col, row),
        Action::ScrollAt { col, row, down } => {
            let a = app.areas();
            let d = if down { 3 } else { -3 };
            if contains(a.detail, col, row) {
                app.detail_scroll = (app.detail_scroll as isize + d).max(0) as u16;
            } else if contains(a.list, col, row) {
                let prev = app.focus;
                app.focus = Focus::List;
                let fx = move_sel(app, d);
                app.focus = prev;
                return fx;
            }
        }
        _ => {}
    }
    Vec::new()
}

fn contains(r: Rect, col: u16, row: u16) -> bool {
    col >= r.x && col < r.x + r.width && row >= r.y && row < r.y + r.height
}

fn click(app: &mut App, col: u16, row: u16) -> Vec<Effect> {
    let a = app.areas();
    if contains(a.tabs, col, row) {
        if let Some(t) = layout::tab_at(app, col) {
            return normal(app, Action::Tab(t));
        }
    } else if contains(a.list, col, row) {
        app.focus = Focus::List;
        // Border and header take the first two lines.
        if row >= a.list.y + 2 {
            let r = app.view().offset + (row - a.list.y - 2) as usize;
            if r < app.visible.len() {
                app.select_row(r);
                app.link_sel = 0;
                app.detail_scroll = 0;
                return app.detail_effects();
            }
        }
    } else if contains(a.detail, col, row) && app.selected_item().is_some() {
        app.focus = Focus::Detail;
    }
    Vec::new()
}

/// The page to open for a paper: its URL, else arXiv, else DOI.
pub fn paper_url(item: &Item) -> Option<String> {
    let f = &item.fields;
    f.url
        .clone()
        .or_else(|| {
            f.arxiv_id
                .as_ref()
                .map(|a| format!("https://arxiv.org/abs/{a}"))
        })
        .or_else(|| f.doi.as_ref().map(|d| format!("https://doi.org/{d}")))
}

fn edit_text(s: &mut String, action: &Action) -> bool {
    match action {
        Action::Char(c) => s.push(*c),
        Action::Backspace => {
            s.pop();
        }
        Action::ClearInput => s.clear(),
        _ => return false,
    }
    true
}

fn filter(app: &mut App, action: Action) -> Vec<Effect> {
    let mut fx = Vec::new();
    let tab = app.tab;
    if edit_text(&mut app.views[tab].filter, &action) {
        app.mode = Mode::Filter;
        app.views[tab].selected = 0;
        app.refresh_visible();
        let q = app.views[tab].filter.trim().to_string();
        if !q.is_empty() && tab != RUNS_TAB {
            fx.push(Effect::Send(Request::Search {
                query: q,
                kind: tab_kind(tab),
                for_filter: true,
            }));
        }
        fx.extend(app.detail_effects());
        return fx;
    }
    match action {
        Action::Submit => app.mode = Mode::Normal,
        Action::Cancel => {
            app.views[tab].filter.clear();
            app.fts = None;
            app.refresh_visible();
            return app.detail_effects();
        }
        Action::Quit => return vec![Effect::Quit],
        Action::NextField | Action::PrevField => {
            app.mode = Mode::Filter;
            let d = if matches!(action, Action::NextField) {
                1
            } else {
                -1
            };
            return move_sel(app, d);
        }
        _ => app.mode = Mode::Filter,
    }
    Vec::new()
}

fn search(app: &mut App, mut s: SearchState, action: Action) -> Vec<Effect> {
    if edit_text(&mut s.query, &action) {
        let q = s.query.trim().to_string();
        if q.is_empty() {
            s.hits.clear();
        }
        // An ID typed exactly is a hit of its own.
        if let Ok(id) = q.parse::<ItemId>()
            && let Some(it) = app.find_item(id)
        {
            s.hits = vec![(id, it.title.clone(), String::new())];
        }
        app.mode = Mode::Search(s);
        if q.is_empty() {
            return Vec::new();
        }
        return vec![Effect::Send(Request::Search {
            query: q,
            kind: None,
            for_filter: false,
        })];
    }
    match action {
        Action::Cancel => {}
        Action::Quit => return vec![Effect::Quit],
        Action::NextField => {
            s.selected = (s.selected + 1).min(s.hits.len().saturating_sub(1));
            app.mode = Mode::Search(s);
        }
        Action::PrevField => {
            s.selected = s.selected.saturating_sub(1);
            app.mode = Mode::Search(s);
        }
        Action::Submit => match s.hits.get(s.selected) {
            Some((id, ..)) => {
                app.jump(*id);
                return app.detail_effects();
            }
            None => app.mode = Mode::Search(s),
        },
        _ => app.mode = Mode::Search(s),
    }
    Vec::new()
}

fn picker(app: &mut App, mut p: PickerState, action: Action) -> Vec<Effect> {
    if edit_text(&mut p.query, &action) {
        p.matches = app.pick_matches(&p.query.clone(), p.from);
        p.selected = 0;
        app.mode = Mode::Picker(p);
        return Vec::new();
    }
    match action {
        Action::Cancel => {}
        Action::Quit => return vec![Effect::Quit],
        Action::NextField => {
            p.selected = (p.selected + 1).min(p.matches.len().saturating_sub(1));
            app.mode = Mode::Picker(p);
        }
        Action::PrevField => {
            p.selected = p.selected.saturating_sub(1);
            app.mode = Mode::Picker(p);
        }
        Action::CycleRelation => {
            let to_kind = p.matches.get(p.selected).map_or(p.from.kind, |id| id.kind);
            let cur = p
                .relation
                .unwrap_or_else(|| Relation::default_for(p.from.kind, to_kind));
            let i = Relation::ALL.iter().position(|r| *r == cur).unwrap_or(0);
            p.relation = Some(Relation::ALL[(i + 1) % Relation::ALL.len()]);
            app.mode = Mode::Picker(p);
        }
        Action::Submit => match p.matches.get(p.selected) {
            Some(&to) => {
                let rel = p
                    .relation
                    .unwrap_or_else(|| Relation::default_for(p.from.kind, to.kind));
                app.info(format!("linking {} {rel} {to}…", p.from));
                return vec![Effect::link(p.from, to, rel)];
            }
            None => app.mode = Mode::Picker(p),
        },
        _ => app.mode = Mode::Picker(p),
    }
    Vec::new()
}

fn form(app: &mut App, mut f: FormState, action: Action) -> Vec<Effect> {
    if f.saving {
        app.mode = Mode::Form(f);
        return Vec::new();
    }
    if f.focused_is_choice() {
        // The status is one of the kind's statuses: chosen, never typed.
        let choice = match action {
            Action::ChoiceNext | Action::Char(' ') => Some((1, None)),
            Action::ChoicePrev => Some((-1, None)),
            Action::Char(c) => Some((0, Some(c))),
            Action::Backspace | Action::ClearInput => Some((0, None)),
            _ => None,
        };
        if let Some((by, letter)) = choice {
            f.choose(by, letter);
            f.error = None;
            app.mode = Mode::Form(f);
            return Vec::new();
        }
    }
    if edit_text(&mut f.focused_mut().value, &action) {
        f.focused_mut().error = None;
        f.error = None;
        app.mode = Mode::Form(f);
        return Vec::new();
    }
    match action {
        Action::NextField => {
            f.focus = (f.focus + 1) % f.fields.len();
            app.mode = Mode::Form(f);
        }
        Action::PrevField => {
            f.focus = (f.focus + f.fields.len() - 1) % f.fields.len();
            app.mode = Mode::Form(f);
        }
        Action::Submit => {
            if !f.validate() {
                app.mode = Mode::Form(f);
                return Vec::new();
            }
            let fx = match &f.target {
                FormTarget::Add(_) => Effect::add(f.to_new_item()),
                FormTarget::Edit(id) => {
                    let patch = f.to_patch();
                    if patch.is_empty() {
                        app.info("no changes");
                        return Vec::new();
                    }
                    Effect::update(*id, patch)
                }
            };
            f.saving = true;
            app.mode = Mode::Form(f);
            return vec![fx];
        }
        Action::Cancel | Action::Quit => {
            let quit = matches!(action, Action::Quit);
            if f.dirty() {
                let what = if quit {
                    ConfirmKind::Quit
                } else {
                    ConfirmKind::Discard
                };
                app.mode = Mode::Confirm(what, Box::new(Mode::Form(f)));
            } else if quit {
                return vec![Effect::Quit];
            }
        }
        _ => app.mode = Mode::Form(f),
    }
    Vec::new()
}

fn prompt(app: &mut App, mut p: PromptState, action: Action) -> Vec<Effect> {
    if edit_text(&mut p.input, &action) {
        app.mode = Mode::Prompt(p);
        return Vec::new();
    }
    match action {
        Action::Submit => {
            let text = p.input.trim().to_string();
            if text.is_empty() {
                app.mode = Mode::Prompt(p);
                return Vec::new();
            }
            if p.kind == PromptKind::LaunchRun {
                let args = text.split_whitespace().map(str::to_string).collect();
                app.info("starting the run…");
                return vec![Effect::LaunchRun(args)];
            }
            let req = match p.kind {
                PromptKind::LaunchRun => unreachable!("handled above"),
                PromptKind::Comment(id) => Request::Comment(id, text),
                PromptKind::Import => Request::ImportBibtex(expand_home(&text)),
                PromptKind::Tag(id) => {
                    let (mut add, mut remove) = (Vec::new(), Vec::new());
                    for w in text.split([' ', ',']).filter(|w| !w.is_empty()) {
                        match w.strip_prefix('-') {
                            Some(r) => remove.push(r.to_string()),
                            None => add.push(w.trim_start_matches('+').to_string()),
                        }
                    }
                    Request::Retag(id, add, remove)
                }
            };
            return vec![Effect::Send(req)];
        }
        Action::Cancel | Action::Quit => {
            let quit = matches!(action, Action::Quit);
            if p.input.trim().is_empty() {
                if quit {
                    return vec![Effect::Quit];
                }
            } else if quit {
                app.mode = Mode::Confirm(ConfirmKind::Quit, Box::new(Mode::Prompt(p)));
            }
        }
        _ => app.mode = Mode::Prompt(p),
    }
    Vec::new()
}

fn expand_home(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::PathBuf::from(home).join(rest),
        _ => std::path::PathBuf::from(path),
    }
}

fn confirm(app: &mut App, what: ConfirmKind, prev: Mode, action: Action) -> Vec<Effect> {
    if !matches!(action, Action::Submit) {
        app.mode = prev;
        return Vec::new();
    }
    match what {
        ConfirmKind::Archive(id) => vec![Effect::Send(Request::Archive(id))],
        ConfirmKind::Delete(id) => vec![Effect::Send(Request::Purge(id))],
        ConfirmKind::Discard => Vec::new(),
        ConfirmKind::Quit => vec![Effect::Quit],
    }
}
