//! Drawing: `render(frame, app)` reads the state and draws it; no side effects.
//! One module per screen part.
pub mod detail;
pub mod form;
pub mod help;
pub mod layout;
pub mod list;
pub mod picker;
pub mod popup;
pub mod run_picker;

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::state::{App, Mode};
use super::tab::Tab;

pub fn render(frame: &mut Frame, app: &App) {
    let a = layout::areas(frame.area());
    tabs(frame, app, a.tabs);
    list::render(frame, app, a.list);
    detail::render(frame, app, a.detail);
    status_line(frame, app, a.status);
    match &app.mode {
        Mode::Help(scroll) => help::render(frame, app, *scroll),
        Mode::Search(s) => picker::render_search(frame, app, s),
        Mode::Picker(p) => picker::render_link(frame, app, p),
        Mode::Form(f) => form::render(frame, app, f),
        Mode::Prompt(p) => popup::render_prompt(frame, app, p),
        Mode::RunPicker(p) => run_picker::render(frame, app, p),
        Mode::Confirm(what, prev) => {
            if let Mode::Form(f) = prev.as_ref() {
                form::render(frame, app, f);
            }
            popup::render_confirm(frame, app, what)
        }
        Mode::Normal | Mode::Filter => {}
    }
}

fn tabs(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let mut spans = Vec::new();
    for (tab, _, label) in layout::tab_labels(app.tab_counts().as_ref()) {
        let style = if tab == app.tab {
            t.selected().add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(label, style));
        spans.push(Span::raw(" "));
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let name = format!("labbook · {}", app.db_label);
    if used + name.chars().count() + 1 < area.width as usize {
        let pad = area.width as usize - used - name.chars().count();
        spans.push(Span::raw(" ".repeat(pad)));
        spans.push(Span::styled(name, t.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn status_line(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let line = if let Mode::Filter = app.mode {
        Line::from(vec![
            Span::styled("/", t.key()),
            Span::raw(app.view().filter.clone()),
            Span::styled("▏", t.key()),
            Span::styled(
                format!(
                    "  {} {}  enter keep · esc clear",
                    app.visible.len(),
                    if app.visible.len() == 1 {
                        "match"
                    } else {
                        "matches"
                    }
                ),
                t.dim(),
            ),
        ])
    } else if let Some(m) = &app.message {
        Line::from(Span::styled(
            m.text.clone(),
            if m.is_error { t.error() } else { Style::new() },
        ))
    } else {
        let k = |name: &str| app.keymap.hint(name);
        let mut hints = vec![(k("help"), "help"), (k("quit"), "quit")];
        if app.tab == Tab::Runs {
            hints.extend([
                (k("sort"), "sort"),
                (k("filter"), "filter"),
                (k("search"), "search"),
            ]);
        } else {
            hints.extend([
                (k("add"), "add"),
                (k("edit"), "edit"),
                (k("status"), "status"),
                (k("link"), "link"),
            ]);
            if app.tab == Tab::Papers {
                hints.extend([(k("import"), "import"), (k("open"), "open")]);
            }
            hints.extend([
                (k("filter"), "filter"),
                (k("search"), "search"),
                (k("back"), "back"),
            ]);
        }
        let mut spans = Vec::new();
        if app.sync.linked > 0 {
            let mut s = format!("GitHub: {} issues", app.sync.linked);
            if app.sync.conflicts > 0 {
                s.push_str(&format!(", {} conflicts", app.sync.conflicts));
            }
            if app.sync.pending > 0 {
                s.push_str(&format!(", {} pending", app.sync.pending));
            }
            let style = if app.sync.conflicts > 0 {
                t.error()
            } else {
                t.dim()
            };
            spans.push(Span::styled(format!("{s} · "), style));
        }
        if !app.view().filter.is_empty() {
            spans.push(Span::styled(format!("/{} ", app.view().filter), t.key()));
        }
        // Whole hints only: drop the ones that do not fit rather than cutting one.
        let mut used: usize = spans.iter().map(|s| s.width()).sum();
        for (key, what) in hints {
            let w = key.chars().count() + what.chars().count() + 3;
            if used + w > area.width as usize + 2 {
                break;
            }
            used += w;
            spans.push(Span::styled(key, t.key()));
            spans.push(Span::styled(format!(" {what}  "), t.dim()));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// A centred rectangle of at most `w`×`h` inside `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    r
}

/// Shortens `s` to `w` columns with an ellipsis.
pub fn truncate(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else if w == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(w - 1).collect();
        t.push('…');
        t
    }
}
