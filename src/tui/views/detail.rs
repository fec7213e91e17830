//! The detail pane: the selected item's fields, links grouped by relation, Markdown body,
//! comments and history (or a run's record on the Runs tab).
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Wrap};

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
    if let Some((_, d)) = app.detail.as_ref().filter(|(i, _)| i.id == item.id)
        && let Some(s) = &d.sync
    {
        let state = match s.status {
            labbook::github::SyncStatus::Synced => "synced",
            labbook::github::SyncStatus::Modified => "changed here, not yet synced",
            labbook::github::SyncStatus::Conflict => "conflict: see `labbook conflicts`",
        };
        out.push(Line::from(vec![
            Span::styled(format!("{:<10} ", "github"), t.dim()),
            Span::styled(format!("{}#{} · {state}", s.repo, s.issue), t.link()),
        ]));
    }
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
    if let Some(d) = detail
        && !d.runs.is_empty()
    {
        out.push(Line::from(""));
        out.push(section(
            t,
            &format!("Runs ({}, newest first)", d.runs.len()),
        ));
        for r in &d.runs {
            let id = r.run.to_string();
            let text = format!(
                "{:<10} {} {}",
                r.status,
                r.name.as_deref().unwrap_or(""),
                r.best.as_deref().unwrap_or("")
            );
            out.push(Line::from(vec![
                Span::styled(format!("  {id:<6} "), t.link()),
                Span::raw(super::truncate(
                    text.trim_end(),
                    width.saturating_sub(9 + id.len().saturating_sub(6)),
                )),
            ]));
        }
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
                    (Some(o), Some(n)) => changed_words(o, n),
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

/// `old → new` for short values; for longer ones only the words that changed, with a word of
/// context either side (`…the [-fast] [+fused] scan…`), so a truncated history line still
/// shows the change.
pub fn changed_words(old: &str, new: &str) -> String {
    let short = old.chars().count() + new.chars().count() <= 40;
    if short && !old.contains('\n') && !new.contains('\n') {
        return format!("{old} → {new}");
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (
        old.split_whitespace().collect(),
        new.split_whitespace().collect(),
    );
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    let (removed, added) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut parts = Vec::new();
    if prefix > 0 {
        let lead = if prefix > 1 { "…" } else { "" };
        parts.push(format!("{lead}{}", a[prefix - 1]));
    }
    if !removed.is_empty() {
        parts.push(format!("[-{}]", removed.join(" ")));
    }
    if !added.is_empty() {
        parts.push(format!("[+{}]", added.join(" ")));
    }
    if suffix > 0 {
        let tail = if suffix > 1 { "…" } else { "" };
        parts.push(format!("{}{tail}", a[a.len() - suffix]));
    }
    if removed.is_empty() && added.is_empty() {
        return "whitespace only".into();
    }
    parts.join(" ")
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
    opt("data", r.environment.as_ref().and_then(|e| e.data.clone()));
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
    } else if let Some(cv) = app
        .compare_view
        .as_ref()
        .filter(|_| app.tab == crate::tui::tab::Tab::Runs && app.marked_runs.len() >= 2)
    {
        render_compare(frame, app, block, area, cv);
        return;
    } else if let Some(r) = app.run_at(app.view().selected) {
        let view = app.run_view.as_ref().filter(|v| v.run == r.id);
        let inner = block.inner(area);
        let mut lines = run_lines(app, r);
        if let Some(v) = view {
            if !v.log_tail.is_empty() {
                lines.push(Line::from(""));
                lines.push(section(t, "Log (runs/R-n/log.txt, last lines)"));
                lines.extend(
                    v.log_tail
                        .iter()
                        .map(|l| Line::from(Span::styled(l.clone(), t.dim()))),
                );
            }
            let n = v.curves.iter().filter(|(_, p)| !p.is_empty()).count() as u16;
            if n > 0 && inner.height >= 24 && inner.width >= 30 {
                // Curves on top (about half the pane), the record below.
                let chart_h = (inner.height / 2).min(n * 10);
                frame.render_widget(block, area);
                let [charts, text] =
                    Layout::vertical([Constraint::Length(chart_h), Constraint::Min(1)])
                        .areas(inner);
                let parts = Layout::vertical(vec![Constraint::Ratio(1, n as u32); n as usize])
                    .split(charts);
                for ((name, pts), part) in v
                    .curves
                    .iter()
                    .filter(|(_, p)| !p.is_empty())
                    .zip(parts.iter())
                {
                    render_curve(frame, app, *part, name, pts);
                }
                frame.render_widget(
                    Paragraph::new(lines)
                        .wrap(Wrap { trim: false })
                        .scroll((app.detail_scroll, 0)),
                    text,
                );
                return;
            }
        }
        (lines, None)
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

/// One metric of the selected run as a line chart (log scale and smoothing from the app).
fn render_curve(frame: &mut Frame, app: &App, area: Rect, name: &str, pts: &[(f64, f64)]) {
    let t = &app.theme;
    let mut data = labbook::plot::smooth(pts, app.smoothing);
    if app.log_scale {
        data = data
            .into_iter()
            .filter(|(_, y)| *y > 0.0)
            .map(|(x, y)| (x, y.log10()))
            .collect();
    }
    if data.is_empty() {
        return;
    }
    let (x0, x1) = data
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (mut y0, mut y1) = data
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    if y1 - y0 < 1e-12 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let shown = |v: f64| {
        let v = if app.log_scale { 10f64.powf(v) } else { v };
        format!("{v:.3}")
    };
    let last = data.last().map(|p| p.1).unwrap_or_default();
    let title = format!(
        " {name} {}{}{} ",
        shown(last),
        if app.log_scale { " · log" } else { "" },
        if app.smoothing > 1 {
            format!(" · avg {}", app.smoothing)
        } else {
            String::new()
        }
    );
    let ds = Dataset::default()
        .marker(symbols::Marker::Braille)
        .graph_type(GraphType::Line)
        .style(t.key())
        .data(&data);
    let chart = Chart::new(vec![ds])
        .block(Block::new().title(Span::styled(title, t.heading())))
        .x_axis(
            Axis::default()
                .bounds([x0, x1.max(x0 + 1.0)])
                .labels([format!("{x0:.0}"), format!("{x1:.0}")])
                .style(t.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .labels([shown(y0), shown(y1)])
                .style(t.dim()),
        );
    frame.render_widget(chart, area);
}

/// Colours of overlaid runs, in marking order.
const RUN_COLORS: [ratatui::style::Color; 6] = [
    ratatui::style::Color::Cyan,
    ratatui::style::Color::Yellow,
    ratatui::style::Color::Magenta,
    ratatui::style::Color::Green,
    ratatui::style::Color::Red,
    ratatui::style::Color::Blue,
];

/// Marked runs side by side: overlaid loss/accuracy curves, then the config keys that
/// differ and the final metrics, one column per run.
fn render_compare(
    frame: &mut Frame,
    app: &App,
    block: Block,
    area: Rect,
    cv: &crate::tui::worker::CompareView,
) {
    let t = &app.theme;
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = vec![Line::from(
        std::iter::once(Span::styled("Comparing ", t.heading()))
            .chain(cv.runs.iter().enumerate().map(|(i, r)| {
                Span::styled(
                    format!("{r} "),
                    Style::new().fg(RUN_COLORS[i % RUN_COLORS.len()]),
                )
            }))
            .collect::<Vec<_>>(),
    )];
    let w = cv
        .keys
        .iter()
        .chain(&cv.finals)
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(8)
        .min(28);
    if cv.keys.is_empty() {
        lines.push(Line::from(Span::styled("configs identical", t.dim())));
    }
    for (k, vals) in cv.keys.iter().chain(&cv.finals) {
        let mut spans = vec![Span::styled(
            format!("{:<w$} ", super::truncate(k, w)),
            t.dim(),
        )];
        for (i, v) in vals.iter().enumerate() {
            spans.push(Span::styled(
                format!("{:<12} ", super::truncate(v, 12)),
                Style::new().fg(RUN_COLORS[i % RUN_COLORS.len()]),
            ));
        }
        lines.push(Line::from(spans));
    }
    let n = cv.curves.len() as u16;
    let chart_h = if inner.height >= 20 && n > 0 {
        (inner.height.saturating_sub(lines.len() as u16 + 1)).min(n * 12)
    } else {
        0
    };
    let [charts, text] =
        Layout::vertical([Constraint::Length(chart_h), Constraint::Min(1)]).areas(inner);
    if chart_h > 0 {
        let parts =
            Layout::vertical(vec![Constraint::Ratio(1, n as u32); n as usize]).split(charts);
        for ((metric, per_run), part) in cv.curves.iter().zip(parts.iter()) {
            let data: Vec<(usize, Vec<(f64, f64)>)> = per_run
                .iter()
                .map(|(id, pts)| {
                    let i = cv.runs.iter().position(|r| r == id).unwrap_or(0);
                    let mut d = labbook::plot::smooth(pts, app.smoothing);
                    if app.log_scale {
                        d = d
                            .into_iter()
                            .filter(|(_, y)| *y > 0.0)
                            .map(|(x, y)| (x, y.log10()))
                            .collect();
                    }
                    (i, d)
                })
                .collect();
            let all = || data.iter().flat_map(|(_, d)| d.iter());
            if all().next().is_none() {
                continue;
            }
            let (x0, x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0), b.max(p.0))
            });
            let (mut y0, mut y1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.1), b.max(p.1))
            });
            if y1 - y0 < 1e-12 {
                y0 -= 0.5;
                y1 += 0.5;
            }
            let shown = |v: f64| {
                let v = if app.log_scale { 10f64.powf(v) } else { v };
                format!("{v:.3}")
            };
            let datasets = data
                .iter()
                .map(|(i, d)| {
                    Dataset::default()
                        .marker(symbols::Marker::Braille)
                        .graph_type(GraphType::Line)
                        .style(Style::new().fg(RUN_COLORS[i % RUN_COLORS.len()]))
                        .data(d)
                })
                .collect();
            let title = format!(
                " {metric}{}{} ",
                if app.log_scale { " · log" } else { "" },
                if app.smoothing > 1 {
                    format!(" · avg {}", app.smoothing)
                } else {
                    String::new()
                }
            );
            let chart = Chart::new(datasets)
                .block(Block::new().title(Span::styled(title, t.heading())))
                .x_axis(
                    Axis::default()
                        .bounds([x0, x1.max(x0 + 1.0)])
                        .labels([format!("{x0:.0}"), format!("{x1:.0}")])
                        .style(t.dim()),
                )
                .y_axis(
                    Axis::default()
                        .bounds([y0, y1])
                        .labels([shown(y0), shown(y1)])
                        .style(t.dim()),
                );
            frame.render_widget(chart, *part);
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text);
}

#[cfg(test)]
mod tests {
    use super::changed_words;

    #[test]
    fn history_shows_the_words_that_changed() {
        assert_eq!(changed_words("todo", "doing"), "todo → doing");
        let old = "We run the selective scan on the CPU with a fused kernel and measure it";
        let new = "We run the selective scan on the GPU with a fused kernel and measure it";
        assert_eq!(changed_words(old, new), "…the [-CPU] [+GPU] with…");
        assert_eq!(
            changed_words(
                "one two three four five six seven eight nine",
                "one two three four five six seven eight nine ten"
            ),
            "…nine [+ten]"
        );
        assert_eq!(
            changed_words(
                "alpha beta gamma delta epsilon zeta eta theta",
                "beta gamma delta epsilon zeta eta theta"
            ),
            "[-alpha] beta…"
        );
        assert_eq!(
            changed_words(
                "a  long enough text with spaces here and there ok",
                "a long enough text with spaces here and there ok"
            ),
            "whitespace only"
        );
    }
}
