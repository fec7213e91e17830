//! Overlays that pick an item: the fuzzy link picker and global search.
use ratatui::Frame;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::{centered, truncate};
use crate::tui::state::{App, PickerState, SearchState};
use labbook::model::Relation;

fn input_line(app: &App, prompt: &str, query: &str) -> Line<'static> {
    let t = &app.theme;
    Line::from(vec![
        Span::styled(prompt.to_string(), t.key()),
        Span::raw(query.to_string()),
        Span::styled("▏", t.key()),
    ])
}

pub fn render_link(frame: &mut Frame, app: &App, p: &PickerState) {
    let t = &app.theme;
    let area = centered(
        frame.area(),
        76,
        frame.area().height.saturating_sub(4).min(22),
    );
    let block = Block::bordered()
        .border_style(t.border(true))
        .title(Span::styled(format!(" Link {} to… ", p.from), t.title()));
    let inner = block.inner(area);
    let to_kind = p.matches.get(p.selected).map_or(p.from.kind, |id| id.kind);
    let rel = p
        .relation
        .unwrap_or_else(|| Relation::default_for(p.from.kind, to_kind));
    let mut lines = vec![
        input_line(app, "> ", &p.query),
        Line::from(vec![
            Span::styled("relation ", t.dim()),
            Span::styled(rel.as_str().to_string(), t.key()),
            Span::styled(
                if p.relation.is_none() {
                    " (usual for the kinds)"
                } else {
                    ""
                }
                .to_string(),
                t.dim(),
            ),
            Span::styled("  ctrl-r next", t.dim()),
        ]),
        Line::from(""),
    ];
    let rows = inner.height.saturating_sub(5) as usize;
    let start = p.selected.saturating_sub(rows.saturating_sub(1));
    for (i, id) in p.matches.iter().enumerate().skip(start).take(rows) {
        let Some(it) = app.find_item(*id) else {
            continue;
        };
        let sel = i == p.selected;
        let style = if sel { t.selected() } else { Style::new() };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<6}", id.to_string()), t.dim().patch(style)),
            Span::styled(
                truncate(&it.title, inner.width.saturating_sub(18) as usize),
                style,
            ),
            Span::styled(format!("  {}", it.status), t.dim()),
        ]));
    }
    if p.matches.is_empty() {
        lines.push(Line::from(Span::styled("no match", t.dim())));
    }
    while lines.len() + 1 < inner.height as usize {
        lines.push(Line::from(""));
    }
    lines.push(Line::from(Span::styled(
        "enter link · ↑↓ choose · esc cancel",
        t.dim(),
    )));
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

pub fn render_search(frame: &mut Frame, app: &App, s: &SearchState) {
    let t = &app.theme;
    let area = centered(
        frame.area(),
        90,
        frame.area().height.saturating_sub(4).min(24),
    );
    let block = Block::bordered()
        .border_style(t.border(true))
        .title(Span::styled(" Search everything ", t.title()));
    let inner = block.inner(area);
    let mut lines = vec![input_line(app, "search: ", &s.query), Line::from("")];
    let rows = (inner.height.saturating_sub(3) / 2) as usize;
    let start = s.selected.saturating_sub(rows.saturating_sub(1));
    for (i, (id, title, snippet)) in s.hits.iter().enumerate().skip(start).take(rows) {
        let sel = i == s.selected;
        let style = if sel { t.selected() } else { Style::new() };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<6}", id.to_string()), t.dim().patch(style)),
            Span::styled(
                truncate(title, inner.width.saturating_sub(8) as usize),
                style,
            ),
        ]));
        lines.push(Line::from(Span::styled(
            format!(
                "      {}",
                truncate(
                    &snippet.replace('\n', " "),
                    inner.width.saturating_sub(8) as usize
                )
            ),
            t.dim(),
        )));
    }
    if s.hits.is_empty() {
        let msg = if s.query.trim().is_empty() {
            "type to search titles, notes, comments, authors and tags (or an ID like P-1)"
        } else {
            "no hits"
        };
        lines.push(Line::from(Span::styled(msg, t.dim())));
    }
    while lines.len() + 1 < inner.height as usize {
        lines.push(Line::from(""));
    }
    lines.push(Line::from(Span::styled(
        "enter jump · ↑↓ choose · esc close · backspace later goes back",
        t.dim(),
    )));
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
