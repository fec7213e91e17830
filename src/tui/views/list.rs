//! The list pane: a sortable table whose columns fit the tab's kind and the width, or
//! a helpful empty state.
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};

use super::truncate;
use crate::tui::state::{App, Focus, Mode};
use crate::tui::tab::Tab;

/// A column: header, width (0 = takes the rest), sort key it shows, drop order (higher
/// drops first when the pane is narrow; 0 never drops).
struct Col {
    head: &'static str,
    width: u16,
    sort: &'static str,
    drop: u8,
}

const fn col(head: &'static str, width: u16, sort: &'static str, drop: u8) -> Col {
    Col {
        head,
        width,
        sort,
        drop,
    }
}

fn columns(tab: Tab) -> &'static [Col] {
    const TASK: &[Col] = &[
        col("ID", 5, "id", 0),
        col("Title", 0, "title", 0),
        col("Status", 7, "status", 0),
        col("Who", 8, "assignee", 3),
        col("Pri", 3, "priority", 4),
        col("Tags", 14, "", 6),
        col("Links", 5, "", 5),
        col("Updated", 10, "updated", 7),
    ];
    const PAPER: &[Col] = &[
        col("ID", 5, "id", 0),
        col("Title", 0, "title", 0),
        col("Year", 4, "year", 3),
        col("Authors", 18, "", 4),
        col("Status", 8, "status", 0),
        col("Tags", 14, "", 6),
        col("Links", 5, "", 5),
        col("Updated", 10, "updated", 7),
    ];
    const IDEA: &[Col] = &[
        col("ID", 5, "id", 0),
        col("Title", 0, "title", 0),
        col("Status", 9, "status", 0),
        col("Tags", 16, "", 6),
        col("Links", 5, "", 5),
        col("Updated", 10, "updated", 7),
    ];
    const EXP: &[Col] = &[
        col("ID", 5, "id", 0),
        col("Title", 0, "title", 0),
        col("Status", 9, "status", 0),
        col("Tags", 16, "", 6),
        col("Links", 5, "", 5),
        col("Updated", 10, "updated", 7),
    ];
    const RUN: &[Col] = &[
        col("ID", 5, "id", 0),
        col("Name", 0, "name", 0),
        col("Exp", 5, "", 4),
        col("Status", 9, "status", 0),
        col("Progress", 17, "", 5),
        col("Final metrics", 26, "", 3),
        col("Created", 10, "created", 6),
    ];
    match tab {
        Tab::Tasks => TASK,
        Tab::Papers => PAPER,
        Tab::Ideas => IDEA,
        Tab::Experiments => EXP,
        Tab::Runs => RUN,
    }
}

/// The columns that fit in `width`, dropping the least important first.
fn fitting(tab: Tab, width: u16) -> Vec<&'static Col> {
    let mut cols: Vec<&Col> = columns(tab).iter().collect();
    let need = |cols: &[&Col]| -> u16 {
        cols.iter()
            .map(|c| if c.width == 0 { 16 } else { c.width })
            .sum::<u16>()
            + cols.len() as u16
    };
    while need(&cols) > width {
        let Some((i, _)) = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.drop > 0)
            .max_by_key(|(_, c)| c.drop)
        else {
            break;
        };
        cols.remove(i);
    }
    cols
}

/// "740/2000 37%", plus the ETA of a running run (from its pace up to the last heartbeat).
fn run_progress(r: &labbook::store::Run) -> String {
    let Some(total) = r.steps_total else {
        return r.steps_done.to_string();
    };
    let pct = labbook::compare::progress(r).unwrap_or(0.0) * 100.0;
    let mut s = format!("{}/{total} {pct:.0}%", r.steps_done);
    if let Some(eta) = r
        .heartbeat_at
        .as_deref()
        .and_then(|now| labbook::compare::eta_secs(r, now))
    {
        s.push_str(&format!(" {}", labbook::compare::fmt_duration(eta)));
    }
    s
}

fn fmt_metric(v: f64) -> String {
    if v.abs() >= 1000.0 || (v != 0.0 && v.abs() < 0.001) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn cells(app: &App, row: usize, cols: &[&Col], title_w: usize) -> Vec<Cell<'static>> {
    let t = &app.theme;
    let mut out = Vec::new();
    if app.tab == Tab::Runs {
        let Some(r) = app.run_at(row) else {
            return out;
        };
        for c in cols {
            let w = if c.width == 0 {
                title_w
            } else {
                c.width as usize
            };
            let cell = match c.head {
                "ID" if app.marked_runs.contains(&r.id) => {
                    Cell::from(Span::styled(format!("*{}", r.id), t.key()))
                }
                "ID" => Cell::from(r.id.to_string()),
                "Name" => Cell::from(truncate(r.name.as_deref().unwrap_or(&r.config), w)),
                "Exp" => Cell::from(r.experiment.map(|e| e.to_string()).unwrap_or_default()),
                "Status" => Cell::from(Span::styled(
                    r.status.as_str().to_string(),
                    t.status(None, r.status.as_str()),
                )),
                "Progress" => Cell::from(run_progress(r)),
                "Final metrics" => Cell::from(truncate(
                    &r.final_metrics
                        .iter()
                        .map(|(k, v)| format!("{k}={}", fmt_metric(*v)))
                        .collect::<Vec<_>>()
                        .join(" "),
                    w,
                )),
                _ => Cell::from(Span::styled(
                    r.created_at.chars().take(10).collect::<String>(),
                    t.dim(),
                )),
            };
            out.push(cell);
        }
        return out;
    }
    let Some(it) = app.item_at(row) else {
        return out;
    };
    for c in cols {
        let w = if c.width == 0 {
            title_w
        } else {
            c.width as usize
        };
        let cell = match c.head {
            "ID" => Cell::from(Span::styled(it.id.to_string(), t.dim())),
            "Title" => Cell::from(truncate(&it.title, w)),
            "Status" => Cell::from(Span::styled(
                it.status.clone(),
                t.status(Some(it.kind), &it.status),
            )),
            "Who" => Cell::from(truncate(it.fields.assignee.as_deref().unwrap_or(""), w)),
            "Pri" => Cell::from(
                it.fields
                    .priority
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            ),
            "Year" => Cell::from(it.fields.year.map(|p| p.to_string()).unwrap_or_default()),
            "Authors" => Cell::from(truncate(&short_authors(it.fields.authors.as_deref()), w)),
            "Tags" => Cell::from(Span::styled(truncate(&it.tags.join(","), w), t.tag())),
            "Links" => {
                let n = app.link_counts.get(&it.rowid).copied().unwrap_or(0);
                Cell::from(if n > 0 { n.to_string() } else { String::new() })
            }
            _ => Cell::from(Span::styled(
                it.updated_at.chars().take(10).collect::<String>(),
                t.dim(),
            )),
        };
        out.push(cell);
    }
    out
}

/// "Albert Gu, Tri Dao" → "Gu, Dao"; more than two → "Gu et al.".
pub fn short_authors(a: Option<&str>) -> String {
    let Some(a) = a else { return String::new() };
    let names: Vec<&str> = a
        .split(" and ")
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let last = |n: &str| n.split_whitespace().last().unwrap_or(n).to_string();
    match names.len() {
        0 => String::new(),
        1 | 2 => names.iter().map(|n| last(n)).collect::<Vec<_>>().join(", "),
        _ => format!("{} et al.", last(names[0])),
    }
}

pub fn render(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let v = app.view();
    let focused = app.focus == Focus::List && !matches!(app.mode, Mode::Help(_));
    let mut title = vec![Span::styled(format!(" {} ", app.tab.label()), t.title())];
    if !v.filter.is_empty() {
        title.push(Span::styled(
            format!(
                "/{} ({}/{}) ",
                v.filter,
                app.visible.len(),
                app.count(app.tab)
            ),
            t.key(),
        ));
    }
    let key = app.tab.sort_key(v.sort);
    let block = Block::bordered()
        .border_style(t.border(focused))
        .title(Line::from(title))
        .title_bottom(Line::from(Span::styled(
            format!(" sort: {key}{} ", if v.reverse { " ↓" } else { "" }),
            t.dim(),
        )));
    let inner = block.inner(area);
    if app.visible.is_empty() {
        frame.render_widget(
            Paragraph::new(empty_text(app))
                .wrap(Wrap { trim: false })
                .block(block),
            area,
        );
        return;
    }
    let cols = fitting(app.tab, inner.width);
    let fixed: u16 = cols.iter().map(|c| c.width).sum::<u16>() + cols.len() as u16 - 1;
    let title_w = inner.width.saturating_sub(fixed).max(8) as usize;
    let header = Row::new(cols.iter().map(|c| {
        let mark = if !c.sort.is_empty() && c.sort == key {
            if v.reverse { "▼" } else { "▲" }
        } else {
            ""
        };
        Cell::from(format!("{}{mark}", c.head))
    }))
    .style(Style::new().add_modifier(Modifier::BOLD));
    let page = inner.height.saturating_sub(1) as usize;
    let end = (v.offset + page).min(app.visible.len());
    let rows: Vec<Row> = (v.offset..end)
        .map(|r| Row::new(cells(app, r, &cols, title_w)))
        .collect();
    let widths: Vec<Constraint> = cols
        .iter()
        .map(|c| {
            if c.width == 0 {
                Constraint::Fill(1)
            } else {
                Constraint::Length(c.width)
            }
        })
        .collect();
    let highlight = if focused {
        t.selected()
    } else {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    };
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .row_highlight_style(highlight);
    let mut state = TableState::default().with_selected(Some(v.selected.saturating_sub(v.offset)));
    frame.render_stateful_widget(table, area, &mut state);
}

fn empty_text(app: &App) -> Text<'static> {
    let t = &app.theme;
    let k = |n: &str| Span::styled(app.keymap.hint(n), t.key());
    if !app.loaded {
        return Text::from(Span::styled("Loading…", t.dim()));
    }
    let v = app.view();
    if !v.filter.is_empty() {
        return Text::from(vec![
            Line::from(format!("Nothing matches /{}.", v.filter)),
            Line::from(vec![k("leave"), Span::raw(" clears the filter.")]),
        ]);
    }
    let mut lines = Vec::new();
    if app.total_items() == 0 && app.runs.is_empty() {
        lines.push(Line::from(Span::styled(
            "This notebook is empty.",
            t.title(),
        )));
        lines.push(Line::from(""));
        lines.push(Line::from(vec![
            Span::raw("  "),
            k("add"),
            Span::raw("  add a task here (or on any tab)"),
        ]));
        lines.push(Line::from(vec![
            Span::raw("  "),
            k("import"),
            Span::raw("  import papers from a BibTeX file"),
        ]));
        lines.push(Line::from(vec![
            Span::raw("  "),
            k("help"),
            Span::raw("  every key"),
        ]));
        lines.push(Line::from(""));
        lines.push(Line::from("Or quit and seed an example project:"));
        lines.push(Line::from(Span::styled(
            "  labbook init --example",
            t.key(),
        )));
        return Text::from(lines);
    }
    if let Some(kind) = app.tab.kind() {
        lines.push(Line::from(format!(
            "No {} yet.",
            kind.plural().to_lowercase()
        )));
        lines.push(Line::from(vec![
            k("add"),
            Span::raw(format!(" adds {}", kind.with_article())),
        ]));
        if app.tab == Tab::Papers {
            lines.push(Line::from(vec![
                k("import"),
                Span::raw(" imports a BibTeX file"),
            ]));
        }
    } else {
        lines.push(Line::from("No runs recorded yet."));
        lines.push(Line::from(
            "Runs appear here as `labbook run` records them.",
        ));
    }
    Text::from(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_drop_least_important_first() {
        let heads = |w| {
            fitting(Tab::Tasks, w)
                .iter()
                .map(|c| c.head)
                .collect::<Vec<_>>()
        };
        assert_eq!(heads(200).len(), 8);
        assert_eq!(heads(36), vec!["ID", "Title", "Status"]);
        assert_eq!(heads(40), vec!["ID", "Title", "Status", "Who"]);
        assert!(!heads(70).contains(&"Updated"));
    }

    #[test]
    fn authors_are_shortened() {
        assert_eq!(short_authors(Some("Albert Gu, Tri Dao")), "Gu, Dao");
        assert_eq!(
            short_authors(Some("A. Vaswani and N. Shazeer and N. Parmar")),
            "Vaswani et al."
        );
    }
}
