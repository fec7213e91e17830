//! The run picker overlay (`R`): configs on the left, the chosen one's text on the right,
//! the overrides and local/remote below.
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::{centered, truncate};
use crate::tui::state::{App, PickerField, RunPickerState};

pub fn render(frame: &mut Frame, app: &App, p: &RunPickerState) {
    let t = &app.theme;
    let area = centered(
        frame.area(),
        frame.area().width.saturating_sub(4).min(120),
        frame.area().height.saturating_sub(2).min(30),
    );
    let title = match p.experiment {
        Some(e) => format!(" Start a run under {e} "),
        None => " Start a run ".to_string(),
    };
    let block = Block::bordered()
        .border_style(t.border(true))
        .title(Span::styled(title, t.title()));
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(3),
    ])
    .areas(inner);
    let focus = |f: PickerField| if p.field == f { t.key() } else { t.dim() };
    let cursor = |f: PickerField| if p.field == f { "▏" } else { "" };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("config> ", focus(PickerField::Config)),
            Span::raw(p.query.clone()),
            Span::styled(cursor(PickerField::Config), t.key()),
        ])),
        top,
    );
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(body);
    let mut lines = Vec::new();
    match &p.configs {
        None => lines.push(Line::from(Span::styled("reading configs/…", t.dim()))),
        Some(configs) if p.matches.is_empty() => lines.push(Line::from(Span::styled(
            if configs.is_empty() {
                "no configs/**/*.toml beside the notebook"
            } else {
                "no match"
            },
            t.dim(),
        ))),
        Some(configs) => {
            let rows = left.height as usize;
            let start = p.selected.saturating_sub(rows.saturating_sub(1));
            for (i, &c) in p.matches.iter().enumerate().skip(start).take(rows) {
                let cfg = &configs[c];
                let style = if i == p.selected {
                    t.selected()
                } else {
                    Style::new()
                };
                lines.push(Line::from(vec![
                    Span::styled(if cfg.recent { "• " } else { "  " }, t.dim()),
                    Span::styled(
                        truncate(&cfg.path, left.width.saturating_sub(3) as usize),
                        style,
                    ),
                ]));
            }
        }
    }
    frame.render_widget(Paragraph::new(lines), left);
    let preview: Vec<Line> = p
        .chosen()
        .map(|c| {
            c.text
                .lines()
                .take(right.height as usize)
                .map(|l| {
                    Line::from(Span::styled(
                        truncate(l, right.width.saturating_sub(2) as usize),
                        t.dim(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    frame.render_widget(Paragraph::new(preview).block(Block::new()), right);
    let where_ = if p.remote {
        vec![
            Span::styled(" local ", t.dim()),
            Span::styled("[remote]", t.key()),
        ]
    } else {
        vec![
            Span::styled("[local]", t.key()),
            Span::styled(" remote", t.dim()),
        ]
    };
    let mut where_line = vec![Span::styled("where: ", focus(PickerField::Where))];
    where_line.extend(where_);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled("--set: ", focus(PickerField::Overrides)),
                Span::raw(p.overrides.clone()),
                Span::styled(cursor(PickerField::Overrides), t.key()),
            ]),
            Line::from(where_line),
            Line::from(Span::styled(
                "enter start · ↑↓ config · tab next field · ←→/space local/remote · esc cancel",
                t.dim(),
            )),
        ]),
        bottom,
    );
}
