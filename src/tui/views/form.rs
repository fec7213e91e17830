//! The add/edit form popup.
use ratatui::Frame;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::{centered, truncate};
use crate::tui::form::{FormState, FormTarget, TAGS_HINT};
use crate::tui::state::App;

pub fn render(frame: &mut Frame, app: &App, f: &FormState) {
    let t = &app.theme;
    let h = f.fields.len() as u16 + 7;
    let area = centered(frame.area(), 72, h);
    let title = match &f.target {
        FormTarget::Add(k) => format!(" New {k} "),
        FormTarget::Edit(id) => format!(" Edit {id} "),
    };
    let block = Block::bordered()
        .border_style(t.border(true))
        .title(Span::styled(title, t.title()));
    let inner = block.inner(area);
    let label_w = 11usize;
    let value_w = (inner.width as usize).saturating_sub(label_w + 2);
    let mut lines = Vec::new();
    for (i, fld) in f.fields.iter().enumerate() {
        let focused = i == f.focus;
        let shown = if fld.name == "status" {
            // A choice, not text: ←/→ or space move through the kind's statuses.
            if focused {
                format!("‹ {} ›", fld.value)
            } else {
                fld.value.clone()
            }
        } else if focused {
            // Show the end of long values, where the cursor is.
            let n = fld.value.chars().count();
            let skip = n.saturating_sub(value_w.saturating_sub(1));
            format!("{}▏", fld.value.chars().skip(skip).collect::<String>())
        } else {
            truncate(&fld.value, value_w)
        };
        let label_style = if fld.error.is_some() {
            t.error()
        } else if focused {
            t.key()
        } else {
            t.dim()
        };
        let value_style = if focused {
            Style::new().add_modifier(Modifier::UNDERLINED)
        } else {
            Style::new()
        };
        let mut line = vec![
            Span::styled(if focused { "▸ " } else { "  " }, t.key()),
            Span::styled(format!("{:<label_w$}", fld.name), label_style),
            Span::styled(shown.clone(), value_style),
        ];
        // How tags are read, always in view (a space used to make one hyphenated tag).
        let room = value_w.saturating_sub(shown.chars().count() + 2);
        if fld.name == "tags" && room >= TAGS_HINT.len() {
            line.push(Span::styled(format!("  {TAGS_HINT}"), t.dim()));
        }
        lines.push(Line::from(line));
    }
    lines.push(Line::from(""));
    let focused = &f.fields[f.focus.min(f.fields.len() - 1)];
    if let Some(e) = &focused.error {
        lines.push(Line::from(Span::styled(
            format!("  {}: {e}", focused.name),
            t.error(),
        )));
    } else if let Some(e) = &f.error {
        lines.push(Line::from(Span::styled(format!("  {e}"), t.error())));
    } else if f.saving {
        lines.push(Line::from(Span::styled("  saving…", t.dim())));
    } else {
        lines.push(Line::from(Span::styled(format!("  {}", f.hint()), t.dim())));
    }
    let errors = f.fields.iter().filter(|x| x.error.is_some()).count();
    if errors > 1 {
        lines.push(Line::from(Span::styled(
            format!("  {errors} fields need fixing"),
            t.error(),
        )));
    } else {
        lines.push(Line::from(""));
    }
    lines.push(Line::from(vec![
        Span::styled("  enter", t.key()),
        Span::styled(" save  ", t.dim()),
        Span::styled("tab/↓", t.key()),
        Span::styled(" next field  ", t.dim()),
        Span::styled("esc", t.key()),
        Span::styled(" cancel", t.dim()),
    ]));
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
