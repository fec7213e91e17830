//! The help overlay, generated from the keymap (so it matches configured keys).
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::centered;
use crate::tui::keymap::TEXT_KEYS;
use crate::tui::state::App;

pub fn lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut out = Vec::new();
    // Each section once, in the order sections first appear in the keymap's table (the table
    // lists some commands of a section apart from the others).
    let rows = app.keymap.help_rows();
    let mut sections: Vec<&str> = Vec::new();
    for (sec, _, _) in &rows {
        if !sections.contains(sec) {
            sections.push(sec);
        }
    }
    for (i, sec) in sections.iter().enumerate() {
        if i > 0 {
            out.push(Line::from(""));
        }
        out.push(Line::from(Span::styled(sec.to_string(), t.heading())));
        for (_, keys, help) in rows.iter().filter(|(s, _, _)| s == sec) {
            out.push(Line::from(vec![
                Span::styled(format!("  {keys:<18}"), t.key()),
                Span::raw(help.to_string()),
            ]));
        }
    }
    out.push(Line::from(""));
    out.push(Line::from(Span::styled(
        "In fields and pickers",
        t.heading(),
    )));
    for (k, h) in TEXT_KEYS {
        out.push(Line::from(vec![
            Span::styled(format!("  {k:<18}"), t.key()),
            Span::raw(h.to_string()),
        ]));
    }
    out.push(Line::from(""));
    out.push(Line::from(Span::styled(
        "Mouse: click selects, wheel scrolls. Rebind keys in [keys].",
        t.dim(),
    )));
    out
}

pub fn render(frame: &mut Frame, app: &App, scroll: u16) {
    let t = &app.theme;
    let all = lines(app);
    let area = frame.area();
    let two_cols = area.width >= 120;
    let w = if two_cols { 116 } else { 64 };
    let popup = centered(area, w, area.height.saturating_sub(2));
    let block = Block::bordered()
        .border_style(t.border(true))
        .title(Span::styled(" Help ", t.title()));
    let inner = block.inner(popup);
    let rows = if two_cols {
        all.len().div_ceil(2)
    } else {
        all.len()
    };
    let more = rows > inner.height as usize;
    let block = block.title_bottom(Span::styled(
        if more {
            " j/k scroll · esc closes "
        } else {
            " esc closes "
        },
        t.dim(),
    ));
    frame.render_widget(Clear, popup);
    frame.render_widget(block, popup);
    if two_cols {
        // Split at a section boundary near the middle.
        let mid = all.len() / 2;
        let split = (mid..all.len())
            .find(|&i| all[i].spans.is_empty() || all[i].to_string().is_empty())
            .unwrap_or(mid);
        let [l, r] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(inner);
        // Long help texts wrap rather than being cut at the column's edge.
        let column = |lines: &[Line<'static>]| {
            Paragraph::new(lines.to_vec())
                .wrap(Wrap { trim: false })
                .scroll((scroll, 0))
        };
        frame.render_widget(column(&all[..split]), l);
        frame.render_widget(column(&all[split + 1..]), r);
    } else {
        let text = Paragraph::new(all)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0));
        frame.render_widget(text, inner);
    }
}
