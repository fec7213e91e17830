//! Normal mode: the keys of the lists and the detail pane, and mouse clicks.
use super::*;

pub(super) fn needs_item(app: &mut App) -> Option<Item> {
    match app.selected_item() {
        Some(i) => Some(i.clone()),
        None if app.tab == Tab::Runs => {
            app.error("runs are read-only here");
            None
        }
        None => {
            app.error("nothing selected");
            None
        }
    }
}

pub(super) fn normal(app: &mut App, action: Action) -> Vec<Effect> {
    app.message = None;
    let page = app.page() as isize;
    match action {
        Action::Quit => return vec![Effect::Quit],
        Action::Help => app.mode = Mode::Help(0),
        Action::Reload => return vec![Effect::Send(Request::LoadAll)],
        Action::Rerun if app.tab != Tab::Runs => return vec![Effect::Send(Request::LoadAll)],
        Action::Rerun => return run_from_snapshot(app, false),
        Action::Comment if app.tab == Tab::Runs => return run_from_snapshot(app, true),
        Action::NextTab => return app.switch_tab(app.tab.next()),
        Action::PrevTab => return app.switch_tab(app.tab.prev()),
        Action::Tab(tab) => return app.switch_tab(tab),
        Action::Down => return app.move_sel(1),
        Action::Up => return app.move_sel(-1),
        Action::PageDown => return app.move_sel(page),
        Action::PageUp => return app.move_sel(-page),
        Action::Top => return app.move_sel(-(app.visible.len() as isize)),
        Action::Bottom => return app.move_sel(app.visible.len() as isize),
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
            let n = app.tab.sort_keys().len();
            let v = &mut app.views[app.tab];
            v.sort = (v.sort + 1) % n;
            let key = app.tab.sort_key(v.sort);
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
        Action::Add => match app.tab.kind() {
            Some(kind) => app.mode = Mode::Form(FormState::add(kind)),
            None => {
                app.mode = Mode::Prompt(PromptState {
                    kind: PromptKind::LaunchRun,
                    input: "configs/".into(),
                })
            }
        },
        Action::RunPicker => {
            let experiment = match (app.tab, app.selected()) {
                (Tab::Runs, _) => None,
                (Tab::Experiments, Some(Sel::Item(id))) => Some(id),
                _ => {
                    app.error("R starts a run from the Experiments tab (under the selected experiment) or the Runs tab");
                    return Vec::new();
                }
            };
            app.mode = Mode::RunPicker(RunPickerState::new(experiment));
            return vec![Effect::ListConfigs];
        }
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
        // On the Runs tab, space/x marks runs to compare (two or more: overlaid curves).
        Action::CycleStatus if app.tab == Tab::Runs => return app.toggle_mark(),
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
        Action::Archive if app.tab == Tab::Runs => {
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
                match item.paper_url().or(issue) {
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
                let fx = app.move_sel(d);
                app.focus = prev;
                return fx;
            }
        }
        _ => {}
    }
    Vec::new()
}

pub(super) fn contains(r: Rect, col: u16, row: u16) -> bool {
    col >= r.x && col < r.x + r.width && row >= r.y && row < r.y + r.height
}

pub(super) fn click(app: &mut App, col: u16, row: u16) -> Vec<Effect> {
    let a = app.areas();
    if contains(a.tabs, col, row) {
        if let Some(t) = layout::tab_at(app.tab_counts().as_ref(), col) {
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

/// `r` / `c` on the Runs tab: the selected run's config snapshot, as it is or edited, as a
/// new run under the same experiment.
fn run_from_snapshot(app: &mut App, edit: bool) -> Vec<Effect> {
    let Some(Sel::Run(id)) = app.selected() else {
        app.error("select a run first");
        return Vec::new();
    };
    let Some(run) = app.runs.iter().find(|r| r.id == id).cloned() else {
        return Vec::new();
    };
    if run.config.trim().is_empty() {
        app.error(format!("{id} has no config snapshot to run again"));
        return Vec::new();
    }
    let name = run
        .config_path
        .as_deref()
        .and_then(|p| std::path::Path::new(p).file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    app.info(if edit {
        format!("editing a copy of {id}'s config…")
    } else {
        format!("starting {id} again…")
    });
    vec![Effect::RunFromSnapshot {
        run: id,
        name,
        config: run.config,
        experiment: run.experiment,
        edit,
    }]
}
