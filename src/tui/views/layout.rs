//! Where things go on screen. Shared by rendering and by mouse handling in `update`,
//! so a click lands on what was drawn.
use ratatui::layout::{Constraint, Layout, Rect};

use crate::tui::state::{App, TABS};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Areas {
    pub tabs: Rect,
    pub list: Rect,
    pub detail: Rect,
    pub status: Rect,
}

/// Tab bar on top, status line at the bottom; list beside the detail pane (below it
/// when the terminal is narrow).
pub fn areas(size: Rect) -> Areas {
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(size);
    let [list, detail] = if size.width >= 70 {
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body)
    } else {
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(body)
    };
    Areas {
        tabs,
        list,
        detail,
        status,
    }
}

/// Tab labels with their start columns, as drawn.
pub fn tab_labels(app: &App) -> Vec<(u16, String)> {
    let mut x = 0u16;
    let mut out = Vec::new();
    for (i, name) in TABS.iter().enumerate() {
        let label = if app.loaded {
            format!(" {} {} {} ", i + 1, name, app.count(i))
        } else {
            format!(" {} {} ", i + 1, name)
        };
        out.push((x, label.clone()));
        x += label.chars().count() as u16 + 1;
    }
    out
}

pub fn tab_at(app: &App, col: u16) -> Option<usize> {
    tab_labels(app)
        .iter()
        .position(|(x, l)| col >= *x && col < x + l.chars().count() as u16)
}
