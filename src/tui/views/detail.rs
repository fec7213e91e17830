//! The detail pane: the selected item's fields, links grouped by relation, Markdown body,
//! comments and history (or a run's record on the Runs tab).
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::tui::markdown;
use crate::tui::state::{App, Focus};
use crate::tui::theme::Theme;
use labbook::model::Item;
use labbook::store::Run;

fn section(t: &Theme, name: &str) -> Line<'static> {
    Line::from(Span::styled(format!("── {name} "), t.heading()))
}

fn field(t: &Theme, name: &str, value: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{name:<10} "), t.dim()),
        Span::raw(value),
    ])
}

/// The lines of an item's detail and the index of the selected link's line.
pub fn item_lines(app: &App, item: &Item, width: usize) -> (Vec<Line<'static>>, Option<usize>) {
    let t = &app.theme;
    let mut out = vec![
        Line::from(vec![
            Span::styled(format!("{}  ", item.id), t.dim()),
            Span::styled(
                item.title.clone(),
                Style::new().add_modifier(Modifier::BOLD),
            ),
        ]),
        Line::from(vec![
            Span::styled(format!("{:<10} ", "status"), t.dim()),
            Span::styled(item.status.clone(), t.status(Some(item.kind), &item.status)),
        ]),
    ];
    if !item.tags.is_empty() {
        out.push(Line::from(
            std::iter::once(Span::styled(format!("{:<10} ", "tags"), t.dim()))
                .chain(
                    item.tags
                        .iter()
                        .map(|g| Span::styled(format!("#{g} "), t.tag())),
                )
                .collect::<Vec<_>>(),
        ));
    }
    for (k, v) in item.fields.entries() {
        if k == "bibtex" {
            continue;
        }
        out.push(field(t, k, v));
    }
    out.push(field(
        t,
        "updated",
        format!(
            "{} by {}",
            item.updated_at
                .chars()
                .take(16)
                .collect::<String>()
                .replace('T', " "),
            item.author
        ),
    ));
    let detail = app.current_detail();
    let links = app.links();
    let mut selected_line = None;
    out.push(Line::from(""));
    out.push(section(t, &format!("Links ({})", links.len())));
    if detail.is_none() {
        out.push(Line::from(Span::styled("loading…", t.dim())));
    } else if links.is_empty() {
        out.push(Line::from(Span::styled(
            format!(
                "none yet; {} links this item to anything",
                app.keymap.hint("link")
            ),
            t.dim(),
        )));
    }
    let mut last_label = "";
    for (i, l) in links.iter().enumerate() {
        if l.label != last_label {
            out.push(Line::from(Span::styled(l.label.clone(), t.dim())));
            last_label = &l.label;
        }
        let sel = app.focus == Focus::Detail && i == app.link_sel;
        let style = if sel { t.selected() } else { Style::new() };
        if sel {
            selected_line = Some(out.len());
        }
        // One line per link, so the cursor and clicks stay on it.
        let id = l.other.to_string();
        let status = format!("  ({})", l.other_status);
        let room = width.saturating_sub(2 + id.len() + 2 + status.chars().count());
        let (title, status) = if room >= 12 {
            (super::truncate(&l.other_title, room), status)
        } else {
            (
                super::truncate(&l.other_title, width.saturating_sub(4 + id.len())),
                String::new(),
            )
        };
        out.push(Line::from(vec![
            Span::styled(if sel { "▸ " } else { "  " }, style),
            Span::styled(id, t.link().patch(style)),
            Span::styled(format!("  {title}"), style),
            Span::styled(status, t.dim()),
        ]));
    }
    if !item.body.trim().is_empty() {
        out.push(Line::from(""));
        out.push(section(t, "Notes"));
        out.extend(markdown::render(&item.body, t));
    }
    if let Some(d) = detail {
        if !d.comments.is_empty() {
            out.push(Line::from(""));
            out.push(section(t, &format!("Comments ({})", d.comments.len())));
            for c in &d.comments {
                out.push(Line::from(vec![
                    Span::styled(c.author.clone(), Style::new().add_modifier(Modifier::BOLD)),
                    Span::styled(
                        format!(
                            " · {}",
                            c.created_at
                                .chars()
                                .take(16)
                                .collect::<String>()
                                .replace('T', " ")
                        ),
                        t.dim(),
                    ),
                ]));
                for l in c.body.lines() {
                    out.push(Line::from(format!("  {l}")));
                }
            }
        }
        if !d.history.is_empty() {
            out.push(Line::from(""));
            out.push(section(t, "History"));
            for h in d.history.iter().rev().take(20) {
                let change = match (&h.old, &h.new) {
                    (Some(o), Some(n)) => format!("{o} → {n}"),
                    (None, Some(n)) => format!("set {n}"),
                    (Some(o), None) => format!("cleared {o}"),
                    (None, None) => String::new(),
                };
                let change = super::truncate(&change.replace('\n', " "), 60);
                out.push(Line::from(vec![
                    Span::styled(
                        format!(
                            "{} {} ",
                            h.at.chars().take(10).collect::<String>(),
                            h.author
                        ),
                        t.dim(),
                    ),
                    Span::raw(format!("{}: {change}", h.field)),
                ]));
            }
        }
    }
    (out, selected_line)
}

pub fn run_lines(app: &App, r: &Run) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut out = vec![
        Line::from(vec![
            Span::styled(format!("{}  ", r.id), t.dim()),
            Span::styled(
                r.name.clone().unwrap_or_else(|| "(unnamed run)".into()),
                Style::new().add_modifier(Modifier::BOLD),
            ),
        ]),
        Line::from(vec![
            Span::styled(format!("{:<10} ", "status"), t.dim()),
            Span::styled(
                r.status.as_str().to_string(),
                t.status(None, r.status.as_str()),
            ),
        ]),
    ];
    let mut opt = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push(field(t, k, v));
        }
    };
    opt("experiment", r.experiment.map(|e| e.to_string()));
    opt("config", r.config_path.clone());
    opt("sweep", r.sweep.clone());
    opt("seed", r.seed.map(|s| s.to_string()));
    opt("backend", r.backend.clone());
    opt("device", r.device.clone());
    opt("host", r.host.clone());
    opt("commit", r.git_commit.clone());
    opt(
        "steps",
        Some(match r.steps_total {
            Some(n) => format!("{} / {n}", r.steps_done),
            None => r.steps_done.to_string(),
        }),
    );
    let when = |s: &String| s.chars().take(16).collect::<String>().replace('T', " ");
    opt("created", Some(when(&r.created_at)));
    opt("started", r.started_at.as_ref().map(when));
    opt("finished", r.finished_at.as_ref().map(when));
    opt("author", Some(r.author.clone()));
    if let Some(e) = &r.error {
        out.push(Line::from(vec![
            Span::styled(format!("{:<10} ", "error"), t.dim()),
            Span::styled(e.clone(), t.error()),
        ]));
    }
    out.push(Line::from(""));
    out.push(section(t, "Final metrics"));
    if r.final_metrics.is_empty() {
        out.push(Line::from(Span::styled("none recorded", t.dim())));
    }
    for (k, v) in &r.final_metrics {
        out.push(field(t, k, format!("{v}")));
    }
    if !r.config.trim().is_empty() {
        out.push(Line::from(""));
        out.push(section(t, "Config"));
        out.extend(
            r.config
                .lines()
                .map(|l| Line::from(Span::styled(l.to_string(), t.dim()))),
        );
    }
    out
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let focused = app.focus == Focus::Detail;
    let block = Block::bordered()
        .border_style(t.border(focused))
        .title(Span::styled(" Detail ", t.title()));
    let inner_h = block.inner(area).height;
    let (lines, sel) = if let Some(item) = app.selected_item() {
        // Prefer the freshly loaded copy (it may be newer than the list's).
        let item = app
            .detail
            .as_ref()
            .filter(|(i, _)| i.id == item.id)
            .map(|(i, _)| i)
            .unwrap_or(item);
        item_lines(app, item, block.inner(area).width as usize)
    } else if let Some(r) = app.run_at(app.view().selected) {
        (run_lines(app, r), None)
    } else {
        let hint = if app.loaded && app.visible.is_empty() {
            "Nothing selected."
        } else {
            ""
        };
        (vec![Line::from(Span::styled(hint, t.dim()))], None)
    };
    let mut scroll = app.detail_scroll;
    if let Some(s) = sel {
        let s = s as u16;
        if s >= scroll + inner_h {
            scroll = s + 1 - inner_h;
        } else if s < scroll {
            scroll = s;
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        area,
    );
}
