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
use super::tab::{PerTab, Tab};
use super::theme::Theme;
use super::views::layout::{self, Areas};
use super::worker::{Data, Detail, Reply, Request};

mod modes;
mod normal;
mod run_picker;
mod selection;
use modes::*;
use normal::*;
pub use run_picker::{ConfigFile, PickerField, RunPickerState};

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
    RunPicker(RunPickerState),
    Confirm(ConfirmKind, Box<Mode>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loc {
    pub tab: Tab,
    pub sel: Option<Sel>,
}

/// The one-line message in the status bar until the next key: what happened, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    pub text: String,
    /// Drawn in the error style.
    pub is_error: bool,
}

/// The items of the notebook, one list per kind.
#[derive(Debug, Clone, Default)]
pub struct ItemLists {
    tasks: Vec<Item>,
    papers: Vec<Item>,
    ideas: Vec<Item>,
    experiments: Vec<Item>,
}

impl ItemLists {
    /// Sorts `items` into their kinds' lists, keeping their order.
    pub fn new(items: Vec<Item>) -> ItemLists {
        let mut lists = ItemLists::default();
        for it in items {
            lists.get_mut(it.kind).push(it);
        }
        lists
    }

    pub fn get(&self, kind: Kind) -> &[Item] {
        match kind {
            Kind::Task => &self.tasks,
            Kind::Paper => &self.papers,
            Kind::Idea => &self.ideas,
            Kind::Experiment => &self.experiments,
        }
    }

    fn get_mut(&mut self, kind: Kind) -> &mut Vec<Item> {
        match kind {
            Kind::Task => &mut self.tasks,
            Kind::Paper => &mut self.papers,
            Kind::Idea => &mut self.ideas,
            Kind::Experiment => &mut self.experiments,
        }
    }

    /// Every item, kind by kind.
    pub fn iter(&self) -> impl Iterator<Item = &Item> {
        Kind::ALL.into_iter().flat_map(|k| self.get(k))
    }

    pub fn total(&self) -> usize {
        Kind::ALL.into_iter().map(|k| self.get(k).len()).sum()
    }
}

pub struct App {
    pub db_label: String,
    pub keymap: Keymap,
    pub theme: Theme,
    pub tab: Tab,
    /// Items per kind, in store order (by number).
    pub items: ItemLists,
    pub link_counts: HashMap<i64, i64>,
    pub runs: Vec<Run>,
    pub sync: labbook::github::SyncSummary,
    pub views: PerTab<ListView>,
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
            tab: Tab::default(),
            items: ItemLists::default(),
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
        self.items.total()
    }

    /// Rows of a tab before any filter.
    pub fn count(&self, tab: Tab) -> usize {
        match tab.kind() {
            Some(kind) => self.items.get(kind).len(),
            None => self.runs.len(),
        }
    }

    /// What the tab bar shows after each label; `None` until the first data arrives.
    pub fn tab_counts(&self) -> Option<PerTab<usize>> {
        self.loaded.then(|| PerTab::from_fn(|tab| self.count(tab)))
    }

    pub fn view(&self) -> &ListView {
        &self.views[self.tab]
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
        self.items = ItemLists::new(data.items);
        self.link_counts = data.link_counts;
        self.runs = data.runs;
        self.sync = data.sync;
        self.loaded = true;
        self.refresh_visible();
        if let Some(id) = self.pending_select.take() {
            self.goto(Loc {
                tab: Tab::from_kind(id.kind),
                sel: Some(Sel::Item(id)),
            });
        } else if let Some(sel) = keep {
            self.select_sel(sel);
        }
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
            Mode::RunPicker(_) if matches!(e.code, KeyCode::Tab | KeyCode::BackTab) => {
                Some(Action::SwitchField)
            }
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
        Mode::RunPicker(p) => run_picker::run_picker(app, p, action),
        Mode::Confirm(what, prev) => confirm(app, what, *prev, action),
    }
}

fn on_reply(app: &mut App, reply: Reply) -> Vec<Effect> {
    match reply {
        Reply::Data(d) => {
            app.apply_data(d);
            let mut fx = app.detail_effects();
            if app.tab == Tab::Runs && app.marked_runs.len() >= 2 {
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
        Reply::Synced(synced) => app.info(synced.status_line()),
        Reply::RunStarted(run) => app.info(format!("{run} started in the background (d stops it)")),
        Reply::RemoteFiled(filed) => {
            let what: Vec<String> = filed
                .iter()
                .map(|(run, issue)| format!("{run} as request #{issue}"))
                .collect();
            app.info(format!(
                "queued remote: {}; sync brings the results back",
                what.join(", ")
            ));
        }
        Reply::Configs(list) => {
            if let Mode::RunPicker(p) = &mut app.mode {
                p.configs = Some(list);
                p.refilter();
            }
        }
        Reply::SweepStarted { sweep, runs } => {
            let runs = runs.iter().map(|r| r.to_string()).collect::<Vec<_>>();
            app.info(format!(
                "sweep {sweep}: {} started in the background (d stops a run)",
                runs.join(" ")
            ));
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
