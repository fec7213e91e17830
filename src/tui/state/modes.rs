//! The modes that take text or a choice: the filter, global search, the link picker, the
//! add/edit form, prompts and confirmations.
use super::*;

pub(super) fn edit_text(s: &mut String, action: &Action) -> bool {
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

pub(super) fn filter(app: &mut App, action: Action) -> Vec<Effect> {
    let mut fx = Vec::new();
    let tab = app.tab;
    if edit_text(&mut app.views[tab].filter, &action) {
        app.mode = Mode::Filter;
        app.views[tab].selected = 0;
        app.refresh_visible();
        let q = app.views[tab].filter.trim().to_string();
        if let Some(kind) = tab.kind().filter(|_| !q.is_empty()) {
            fx.push(Effect::Send(Request::Search {
                query: q,
                kind: Some(kind),
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
            return app.move_sel(d);
        }
        _ => app.mode = Mode::Filter,
    }
    Vec::new()
}

pub(super) fn search(app: &mut App, mut s: SearchState, action: Action) -> Vec<Effect> {
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

impl App {
    /// Ranks items of all kinds against the picker query.
    pub(super) fn pick_matches(&mut self, query: &str, exclude: ItemId) -> Vec<ItemId> {
        let pattern = Pattern::parse(query, CaseMatching::Ignore, Normalization::Smart);
        let mut buf = Vec::new();
        let mut scored: Vec<(u32, ItemId)> = Vec::new();
        for it in self.items.iter().filter(|i| i.id != exclude) {
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
}

pub(super) fn picker(app: &mut App, mut p: PickerState, action: Action) -> Vec<Effect> {
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

pub(super) fn form(app: &mut App, mut f: FormState, action: Action) -> Vec<Effect> {
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

pub(super) fn prompt(app: &mut App, mut p: PromptState, action: Action) -> Vec<Effect> {
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

pub(super) fn expand_home(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::PathBuf::from(home).join(rest),
        _ => std::path::PathBuf::from(path),
    }
}

pub(super) fn confirm(app: &mut App, what: ConfirmKind, prev: Mode, action: Action) -> Vec<Effect> {
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
