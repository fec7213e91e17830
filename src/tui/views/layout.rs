//! Where things go on screen. Shared by rendering and by mouse handling in `update`,
//! so a click lands on what was drawn.
use ratatui::layout::{Constraint, Layout, Rect};

use crate::tui::tab::{PerTab, Tab};

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

/// Tab labels with their start columns, as drawn; `counts` (rows per tab) once loaded.
pub fn tab_labels(counts: Option<&PerTab<usize>>) -> Vec<(Tab, u16, String)> {
    let mut x = 0u16;
    let mut out = Vec::new();
    for tab in Tab::ALL {
        let label = match counts {
            Some(n) => format!(" {} {} {} ", tab.number(), tab.label(), n[tab]),
            None => format!(" {} {} ", tab.number(), tab.label()),
        };
        let width = label.chars().count() as u16;
        out.push((tab, x, label));
        x += width + 1;
    }
    out
}

/// The tab whose label is drawn at column `col` of the tab bar.
pub fn tab_at(counts: Option<&PerTab<usize>>, col: u16) -> Option<Tab> {
    tab_labels(counts)
        .into_iter()
        .find(|(_, x, l)| col >= *x && col < x + l.chars().count() as u16)
        .map(|(tab, ..)| tab)
}
