//! The notebook's overview in Markdown, one section per kind: what `labbook export
//! markdown` writes (with every item's body, links and comments) and what `labbook sync`
//! keeps in the repo's "Lab notebook" issue (compact, each item linked to its issue).
//!
//! Tasks are grouped by status with assignee and priority; papers are a table (title,
//! authors, year, link, status); ideas list their linked experiments; experiments show
//! hypothesis, status and conclusion and a table of their runs with the best evaluation
//! metrics and a sparkline of the loss.
use std::collections::HashMap;
use std::fmt::Write;

use crate::error::Result;
use crate::model::{Item, ItemId, Kind, LinkView};
use crate::store::{ListFilter, Run, RunFilter, Store};

/// What to render.
#[derive(Debug, Clone)]
pub struct Options {
    /// The kinds shown, in [`Kind::ALL`] order.
    pub kinds: Vec<Kind>,
    /// Each item's issue number, shown as `#12` (GitHub links it).
    pub issues: HashMap<ItemId, u64>,
    /// Every item's body, links and comments too (the export); the page leaves them to the
    /// items' own issues.
    pub details: bool,
}

/// One kind's part of the overview.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub kind: Kind,
    pub text: String,
}

/// The overview's sections, one per kind in `opts.kinds` that has items.
pub fn sections(store: &Store, opts: &Options) -> Result<Vec<Section>> {
    let items = store.list(&ListFilter::default())?;
    let runs = store.list_runs(&RunFilter::default())?;
    let titles: HashMap<ItemId, &str> = items.iter().map(|i| (i.id, i.title.as_str())).collect();
    let mut out = Vec::new();
    for kind in Kind::ALL {
        if !opts.kinds.contains(&kind) {
            continue;
        }
        let of_kind: Vec<&Item> = items.iter().filter(|i| i.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let mut text = format!("## {}\n\n", kind.plural());
        let r = Renderer {
            store,
            opts,
            titles: &titles,
        };
        if opts.details {
            for i in &of_kind {
                r.detailed(&mut text, i, &runs)?;
            }
        } else {
            match kind {
                Kind::Task => r.tasks(&mut text, &of_kind),
                Kind::Paper => r.papers(&mut text, &of_kind),
                Kind::Idea => r.ideas(&mut text, &of_kind)?,
                Kind::Experiment => {
                    for i in &of_kind {
                        r.experiment(&mut text, i, &runs)?;
                    }
                }
            }
        }
        out.push(Section { kind, text });
    }
    Ok(out)
}

struct Renderer<'a> {
    store: &'a Store,
    opts: &'a Options,
    titles: &'a HashMap<ItemId, &'a str>,
}

impl Renderer<'_> {
    /// `T-3` or `T-3 (#12)`.
    fn id(&self, id: ItemId) -> String {
        match self.opts.issues.get(&id) {
            Some(n) => format!("{id} (#{n})"),
            None => id.to_string(),
        }
    }

    /// An item the overview may show (an item of a kind it leaves out is named by id only).
    fn shown(&self, id: ItemId) -> bool {
        self.opts.kinds.contains(&id.kind)
    }

    fn tasks(&self, out: &mut String, tasks: &[&Item]) {
        for status in Kind::Task.statuses() {
            let group: Vec<&&Item> = tasks.iter().filter(|t| t.status == *status).collect();
            if group.is_empty() {
                continue;
            }
            let _ = writeln!(out, "**{status}**\n");
            for t in group {
                let mut meta = Vec::new();
                if let Some(a) = &t.fields.assignee {
                    meta.push(format!("@{a}"));
                }
                if let Some(p) = t.fields.priority {
                    meta.push(format!("P{p}"));
                }
                if let Some(d) = &t.fields.due {
                    meta.push(format!("due {d}"));
                }
                let meta = if meta.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", meta.join(" · "))
                };
                let _ = writeln!(out, "- {} · {}{meta}", self.id(t.id), one_line(&t.title));
            }
            out.push('\n');
        }
    }

    fn papers(&self, out: &mut String, papers: &[&Item]) {
        let _ = writeln!(out, "| Paper | Title | Authors | Year | Link | Status |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for p in papers {
            let f = &p.fields;
            let link = p
                .paper_url()
                .map(|u| format!("[link]({u})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                self.id(p.id),
                cell(&p.title),
                cell(f.authors.as_deref().unwrap_or("")),
                f.year.map(|y| y.to_string()).unwrap_or_default(),
                link,
                p.status
            );
        }
        out.push('\n');
    }

    fn ideas(&self, out: &mut String, ideas: &[&Item]) -> Result<()> {
        for i in ideas {
            let experiments: Vec<String> = self
                .store
                .links_of(i.id)?
                .iter()
                .filter(|l| l.other.kind == Kind::Experiment && self.shown(l.other))
                .map(|l| self.id(l.other))
                .collect();
            let linked = if experiments.is_empty() {
                String::new()
            } else {
                format!(" — experiments: {}", experiments.join(", "))
            };
            let _ = writeln!(
                out,
                "- {} · {} _({})_{linked}",
                self.id(i.id),
                one_line(&i.title),
                i.status
            );
        }
        out.push('\n');
        Ok(())
    }

    fn experiment(&self, out: &mut String, e: &Item, runs: &[Run]) -> Result<()> {
        let _ = writeln!(out, "### {} · {}\n", self.id(e.id), one_line(&e.title));
        let _ = writeln!(out, "**status** {}\n", e.status);
        if let Some(h) = &e.fields.hypothesis {
            let _ = writeln!(out, "**Hypothesis.** {}\n", one_line(h));
        }
        if let Some(c) = &e.fields.conclusion {
            let _ = writeln!(out, "**Conclusion.** {}\n", one_line(c));
        }
        self.runs_table(out, e.id, runs)
    }

    fn runs_table(&self, out: &mut String, experiment: ItemId, runs: &[Run]) -> Result<()> {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| r.experiment == Some(experiment))
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        let _ = writeln!(
            out,
            "| Run | Config | Status | Best eval | Commit | Where | Loss |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for r in mine {
            let loss = self.store.metric_series(r.id, "loss")?;
            let best = self.best_eval(r)?;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.id,
                cell(r.name.as_deref().unwrap_or("")),
                r.status,
                best,
                r.git_commit
                    .as_deref()
                    .map(|c| format!("`{}`", &c[..c.len().min(8)]))
                    .unwrap_or_default(),
                cell(
                    &[r.host.as_deref(), r.device.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" · ")
                ),
                sparkline(&loss.iter().map(|p| p.1).collect::<Vec<_>>(), 16)
            );
        }
        out.push('\n');
        Ok(())
    }

    /// The best value of each evaluation accuracy or loss (max for accuracies, min
    /// otherwise), at most three.
    fn best_eval(&self, r: &Run) -> Result<String> {
        let mut parts = Vec::new();
        for key in self.store.metric_keys(r.id)? {
            if !key.starts_with("eval/") || parts.len() >= 3 {
                continue;
            }
            let series = self.store.metric_series(r.id, &key)?;
            let values = series.iter().map(|p| p.1).filter(|v| v.is_finite());
            let best = if key.contains("acc") {
                values.fold(f64::NEG_INFINITY, f64::max)
            } else {
                values.fold(f64::INFINITY, f64::min)
            };
            if best.is_finite() {
                parts.push(format!("{} {best:.3}", key.trim_start_matches("eval/")));
            }
        }
        Ok(parts.join(", "))
    }

    /// The export's form: every item in full.
    fn detailed(&self, out: &mut String, i: &Item, runs: &[Run]) -> Result<()> {
        let _ = writeln!(out, "### {} · {}\n", self.id(i.id), i.title);
        let mut meta = vec![format!("**status** {}", i.status)];
        if !i.tags.is_empty() {
            meta.push(format!("**tags** {}", i.tags.join(", ")));
        }
        for (k, v) in i.fields.entries() {
            if k != "bibtex" && k != "hypothesis" && k != "conclusion" {
                meta.push(format!("**{}** {}", k.replace('_', " "), v));
            }
        }
        meta.push(format!("**by** {} · {}", i.author, &i.created_at[..10]));
        let _ = writeln!(out, "{}\n", meta.join(" · "));
        if let Some(h) = &i.fields.hypothesis {
            let _ = writeln!(out, "**Hypothesis.** {h}\n");
        }
        if !i.body.trim().is_empty() {
            let _ = writeln!(out, "{}\n", i.body.trim_end());
        }
        if let Some(c) = &i.fields.conclusion {
            let _ = writeln!(out, "**Conclusion.** {c}\n");
        }
        let links: Vec<LinkView> = self.store.links_of(i.id)?;
        if !links.is_empty() {
            let _ = writeln!(out, "Links:");
            for l in &links {
                let title = self.titles.get(&l.other).copied().unwrap_or(&l.other_title);
                let _ = writeln!(out, "- {} {} — {}", l.label, l.other, title);
            }
            out.push('\n');
        }
        let comments = self.store.comments(i.id)?;
        if !comments.is_empty() {
            let _ = writeln!(out, "Comments:");
            for c in &comments {
                let _ = writeln!(
                    out,
                    "- **{}** ({}): {}",
                    c.author,
                    &c.created_at[..10],
                    c.body
                );
            }
            out.push('\n');
        }
        if i.kind == Kind::Experiment {
            self.runs_table(out, i.id, runs)?;
        }
        Ok(())
    }
}

/// Text for one line of Markdown (newlines folded).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text for a table cell (no newlines, no column breaks).
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

/// `values` as a Unicode sparkline of at most `width` characters (each the mean of its
/// share of the values), lowest ▁ to highest █; non-finite values are skipped.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() || width == 0 {
        return String::new();
    }
    let n = width.min(v.len());
    let buckets: Vec<f64> = (0..n)
        .map(|b| {
            let (lo, hi) = (
                b * v.len() / n,
                ((b + 1) * v.len() / n).max(b * v.len() / n + 1),
            );
            v[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
        })
        .collect();
    let (min, max) = buckets
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    buckets
        .iter()
        .map(|&x| {
            let t = if max > min {
                (x - min) / (max - min)
            } else {
                0.5
            };
            BARS[((t * 7.0).round() as usize).min(7)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn a_sparkline_follows_the_values() {
        assert_eq!(sparkline(&[4.0, 3.0, 2.0, 1.0], 4), "█▆▃▁");
        assert_eq!(sparkline(&[1.0; 5], 3), "▅▅▅");
        assert_eq!(sparkline(&[], 8), "");
        // 100 falling values in 10 bars: highest first, lowest last.
        let falling: Vec<f64> = (0..100).map(|i| 100.0 - i as f64).collect();
        let s = sparkline(&falling, 10);
        assert_eq!(s.chars().count(), 10);
        assert!(s.starts_with('█') && s.ends_with('▁'), "{s}");
    }
}
