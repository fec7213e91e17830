//! Small one-line prompts (tag, comment, BibTeX path) and yes/no confirmations.
use ratatui::Frame;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::centered;
use crate::tui::state::{App, ConfirmKind, PromptKind, PromptState};

pub fn render_prompt(frame: &mut Frame, app: &App, p: &PromptState) {
    let t = &app.theme;
    let (title, hint) = match p.kind {
        PromptKind::Tag(id) => (format!(" Tag {id} "), "words add tags, -word removes one"),
        PromptKind::Comment(id) => (format!(" Comment on {id} "), "enter posts the comment"),
        PromptKind::LaunchRun => (
            " Start a run ".to_string(),
            "config file [--set k=v ...] [-e E-n]; runs in the background",
        ),
        PromptKind::Import => (
            " Import BibTeX ".to_string(),
            "path to a .bib file; duplicates are skipped",
        ),
    };
    let area = centered(frame.area(), 70, 5);
    let block = Block::bordered()
        .border_style(t.border(true))
        .title(Span::styled(title, t.title()));
    let w = block.inner(area).width as usize;
    let n = p.input.chars().count();
    let shown: String = p
        .input
        .chars()
        .skip(n.saturating_sub(w.saturating_sub(3)))
        .collect();
    let lines = vec![
        Line::from(vec![
            Span::styled("> ", t.key()),
            Span::raw(shown),
            Span::styled("▏", t.key()),
        ]),
        Line::from(""),
        Line::from(Span::styled(format!("{hint} · esc cancels"), t.dim())),
    ];
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

pub fn render_confirm(frame: &mut Frame, app: &App, what: &ConfirmKind) {
    let t = &app.theme;
    let question = match what {
        ConfirmKind::Archive(id) => format!("Archive {id}? It leaves the lists but is kept."),
        ConfirmKind::Delete(id) => format!("Delete {id} for good, with its links and comments?"),
        ConfirmKind::Discard => "Discard your unsaved changes?".to_string(),
        ConfirmKind::Quit => "Quit and lose your unsaved changes?".to_string(),
    };
    let area = centered(
        frame.area(),
        (question.chars().count() as u16 + 6).max(40),
        5,
    );
    let block = Block::bordered()
        .border_style(t.error())
        .title(Span::styled(" Confirm ", t.error()));
    let lines = vec![
        Line::from(question),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", t.key()),
            Span::styled(" yes   ", t.dim()),
            Span::styled("any other key", t.key()),
            Span::styled(" no", t.dim()),
        ]),
    ];
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
