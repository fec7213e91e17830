//! The selection: which rows of the current tab are visible (filter, then sort), which one
//! is selected and scrolled into view, moving between tabs and locations, and the runs
//! marked for comparison.
use super::*;

impl App {
    /// The item behind a row of the current tab's `visible` list.
    pub fn item_at(&self, row: usize) -> Option<&Item> {
        let kind = self.tab.kind()?;
        self.items.get(kind).get(*self.visible.get(row)?)
    }

    pub fn run_at(&self, row: usize) -> Option<&Run> {
        if self.tab != Tab::Runs {
            return None;
        }
        self.runs.get(*self.visible.get(row)?)
    }

    pub fn selected(&self) -> Option<Sel> {
        let row = self.view().selected;
        if self.tab == Tab::Runs {
            self.run_at(row).map(|r| Sel::Run(r.id))
        } else {
            self.item_at(row).map(|i| Sel::Item(i.id))
        }
    }

    pub fn selected_item(&self) -> Option<&Item> {
        self.item_at(self.view().selected)
    }

    pub fn find_item(&self, id: ItemId) -> Option<&Item> {
        self.items.get(id.kind).iter().find(|i| i.id == id)
    }

    /// The detail for the selected item, if loaded and current.
    pub fn current_detail(&self) -> Option<&Detail> {
        let sel = self.selected_item()?;
        self.detail
            .as_ref()
            .filter(|(i, _)| i.id == sel.id)
            .map(|(_, d)| d)
    }

    /// Links of the selected item in display order (grouped by label).
    pub fn links(&self) -> Vec<&labbook::model::LinkView> {
        let mut v: Vec<_> = self
            .current_detail()
            .map(|d| d.links.iter().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.label.cmp(&b.label).then(a.other.cmp(&b.other)));
        v
    }

    /// Rows the list shows at once.
    pub fn page(&self) -> usize {
        (self.areas().list.height.saturating_sub(3) as usize).max(1)
    }

    /// Recomputes `visible` for the current tab: filter, then sort.
    pub fn refresh_visible(&mut self) {
        let tab = self.tab;
        let v = &self.views[tab];
        let q = v.filter.trim().to_string();
        let items = tab.kind().map(|k| self.items.get(k));
        let mut rows: Vec<usize> = (0..self.count(tab)).collect();
        if !q.is_empty() {
            let pattern = Pattern::parse(&q, CaseMatching::Ignore, Normalization::Smart);
            let mut buf = Vec::new();
            let fts = self.fts.as_ref().filter(|(fq, _)| *fq == q).map(|(_, s)| s);
            let matcher = &mut self.matcher;
            // A query that is an ID (`t-12`, `R3`) also matches that row.
            let item_id = q.parse::<ItemId>().ok();
            let run_id = q.parse::<RunId>().ok();
            rows.retain(|&i| {
                let Some(items) = items else {
                    let r = &self.runs[i];
                    let name = r.name.as_deref().or(r.config_path.as_deref()).unwrap_or("");
                    return pattern
                        .score(Utf32Str::new(name, &mut buf), matcher)
                        .is_some()
                        || run_id == Some(r.id);
                };
                let it = &items[i];
                pattern
                    .score(Utf32Str::new(&it.title, &mut buf), matcher)
                    .is_some()
                    || fts.is_some_and(|s| s.contains(&it.id))
                    || item_id == Some(it.id)
            });
        }
        let key = tab.sort_key(v.sort);
        match (tab.kind(), items) {
            (Some(kind), Some(items)) => {
                let status_rank = |s: &str| kind.statuses().iter().position(|x| *x == s);
                rows.sort_by(|&a, &b| {
                    let (a, b) = (&items[a], &items[b]);
                    match key {
                        "title" => a.title.to_lowercase().cmp(&b.title.to_lowercase()),
                        "status" => status_rank(&a.status).cmp(&status_rank(&b.status)),
                        "priority" => (a.fields.priority.is_none(), a.fields.priority)
                            .cmp(&(b.fields.priority.is_none(), b.fields.priority)),
                        "assignee" => a.fields.assignee.cmp(&b.fields.assignee),
                        "year" => b.fields.year.cmp(&a.fields.year),
                        "updated" => b.updated_at.cmp(&a.updated_at),
                        _ => a.id.num.cmp(&b.id.num),
                    }
                    .then(a.id.num.cmp(&b.id.num))
                });
            }
            _ => {
                let runs = &self.runs;
                rows.sort_by(|&a, &b| {
                    let (a, b) = (&runs[a], &runs[b]);
                    match key {
                        "name" => a.name.cmp(&b.name),
                        "status" => a.status.as_str().cmp(b.status.as_str()),
                        "created" => a.created_at.cmp(&b.created_at),
                        _ => a.id.cmp(&b.id),
                    }
                    .then(a.id.cmp(&b.id))
                });
            }
        }
        if v.reverse {
            rows.reverse();
        }
        self.visible = rows;
        self.clamp();
    }

    /// Keeps the selection in range and visible.
    pub(super) fn clamp(&mut self) {
        let n = self.visible.len();
        let page = self.page();
        let v = &mut self.views[self.tab];
        v.selected = v.selected.min(n.saturating_sub(1));
        if v.selected < v.offset {
            v.offset = v.selected;
        } else if v.selected >= v.offset + page {
            v.offset = v.selected + 1 - page;
        }
        v.offset = v.offset.min(n.saturating_sub(page.min(n)));
    }

    pub(super) fn select_row(&mut self, row: usize) {
        self.views[self.tab].selected = row;
        self.clamp();
    }

    /// Puts the selection on `sel` in the current tab if it is visible.
    pub(super) fn select_sel(&mut self, sel: Sel) -> bool {
        let pos = match sel {
            Sel::Item(id) => {
                let items = self.tab.kind().map_or(&[][..], |k| self.items.get(k));
                self.visible
                    .iter()
                    .position(|&i| items.get(i).is_some_and(|it| it.id == id))
            }
            Sel::Run(id) => self.visible.iter().position(|&i| {
                self.tab == Tab::Runs && self.runs.get(i).is_some_and(|r| r.id == id)
            }),
        };
        match pos {
            Some(p) => {
                self.select_row(p);
                true
            }
            None => false,
        }
    }

    /// Moves the list selection by `delta` rows, or, with the detail pane focused, the
    /// link selection (the scroll when there are no links).
    pub(super) fn move_sel(&mut self, delta: isize) -> Vec<Effect> {
        if self.focus == Focus::Detail {
            let n = self.links().len();
            if n > 0 {
                self.link_sel = (self.link_sel as isize + delta).clamp(0, n as isize - 1) as usize;
            } else {
                self.detail_scroll = (self.detail_scroll as isize + delta).max(0) as u16;
            }
            return Vec::new();
        }
        let n = self.visible.len();
        if n == 0 {
            return Vec::new();
        }
        let row = (self.view().selected as isize + delta).clamp(0, n as isize - 1) as usize;
        self.select_row(row);
        self.detail_scroll = 0;
        self.link_sel = 0;
        self.detail_effects()
    }

    /// Shows another tab, with its own selection and sort; a filter's FTS hits belong to
    /// the tab they were asked for.
    pub(super) fn switch_tab(&mut self, tab: Tab) -> Vec<Effect> {
        self.tab = tab;
        self.focus = Focus::List;
        self.link_sel = 0;
        self.detail_scroll = 0;
        self.fts = None;
        self.refresh_visible();
        self.detail_effects()
    }

    /// Goes to a location: its tab, the item (clearing a filter that hides it).
    pub(super) fn goto(&mut self, loc: Loc) {
        self.tab = loc.tab;
        self.focus = Focus::List;
        self.link_sel = 0;
        self.detail_scroll = 0;
        self.refresh_visible();
        if let Some(sel) = loc.sel
            && !self.select_sel(sel)
        {
            self.views[self.tab].filter.clear();
            self.refresh_visible();
            self.select_sel(sel);
        }
    }

    pub(super) fn here(&self) -> Loc {
        Loc {
            tab: self.tab,
            sel: self.selected(),
        }
    }

    /// Follows to an item, remembering where we were.
    pub(super) fn jump(&mut self, id: ItemId) {
        self.back.push(self.here());
        self.goto(Loc {
            tab: Tab::from_kind(id.kind),
            sel: Some(Sel::Item(id)),
        });
    }

    /// Asks the worker for the selected item's detail when it is not the one shown.
    pub(super) fn detail_effects(&self) -> Vec<Effect> {
        match self.selected() {
            Some(Sel::Item(id)) if self.detail.as_ref().is_none_or(|(i, _)| i.id != id) => {
                vec![Effect::Send(Request::Detail(id))]
            }
            Some(Sel::Run(id)) if self.run_view.as_ref().is_none_or(|v| v.run != id) => {
                vec![Effect::Send(Request::RunView(id))]
            }
            _ => Vec::new(),
        }
    }

    /// Marks or unmarks the selected run for comparison; two or more marked ask for the
    /// comparison.
    pub(super) fn toggle_mark(&mut self) -> Vec<Effect> {
        let Some(id) = self.run_at(self.view().selected).map(|r| r.id) else {
            return Vec::new();
        };
        if let Some(pos) = self.marked_runs.iter().position(|r| *r == id) {
            self.marked_runs.remove(pos);
        } else {
            self.marked_runs.push(id);
        }
        self.compare_view = None;
        let marked = self
            .marked_runs
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        if self.marked_runs.len() >= 2 {
            self.info(format!("comparing {marked}"));
            return vec![Effect::Send(Request::CompareRuns(self.marked_runs.clone()))];
        }
        self.info(if marked.is_empty() {
            "no runs marked".to_string()
        } else {
            format!("marked {marked}; mark another to compare")
        });
        Vec::new()
    }
}
