//! Whole-notebook exports: one readable Markdown document (the shared doc labbook
//! replaces), JSON for scripts, BibTeX for papers, and runs' metric curves as CSV or JSON.
use std::fmt::Write;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Comment, Item, Kind, LinkView, RunId};
use crate::store::{ListFilter, Run, RunFilter, Store};

/// An item with everything attached to it.
#[derive(Debug, Serialize)]
pub struct ItemDetail {
    #[serde(flatten)]
    pub item: Item,
    pub links: Vec<LinkView>,
    pub comments: Vec<Comment>,
}

#[derive(Debug, Serialize)]
pub struct Notebook {
    pub schema_version: i64,
    pub exported_at: String,
    pub items: Vec<ItemDetail>,
    pub runs: Vec<Run>,
}

pub fn notebook(store: &Store) -> Result<Notebook> {
    let items = store
        .list(&ListFilter::default())?
        .into_iter()
        .map(|item| {
            Ok(ItemDetail {
                links: store.links_of(item.id)?,
                comments: store.comments(item.id)?,
                item,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Notebook {
        schema_version: crate::store::schema_version(),
        exported_at: crate::store::now(),
        items,
        runs: store.list_runs(&RunFilter::default())?,
    })
}

/// The notebook as one Markdown document, grouped by kind, with links as cross-references:
/// [`crate::overview`]'s detailed form (every item in full, experiments with their runs),
/// then every run.
pub fn markdown(store: &Store) -> Result<String> {
    let runs = store.list_runs(&RunFilter::default())?;
    let mut out = String::new();
    let _ = writeln!(out, "# Lab notebook\n");
    let _ = writeln!(out, "_Exported by labbook on {}._\n", crate::store::now());
    let opts = crate::overview::Options {
        kinds: Kind::ALL.to_vec(),
        issues: Default::default(),
        details: true,
    };
    for section in crate::overview::sections(store, &opts)? {
        out.push_str(&section.text);
    }
    if !runs.is_empty() {
        let _ = writeln!(out, "## Runs\n");
        let _ = writeln!(
            out,
            "| Run | Experiment | Status | Backend | Final metrics |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for r in &runs {
            let metrics = r
                .final_metrics
                .iter()
                .map(|(k, v)| format!("{k}={v:.4}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.id,
                r.experiment.map(|e| e.to_string()).unwrap_or_default(),
                r.status,
                r.backend.as_deref().unwrap_or(""),
                metrics
            );
        }
        out.push('\n');
    }
    Ok(out)
}

/// Every (non-archived) paper as BibTeX.
pub fn bibtex(store: &Store) -> Result<String> {
    let papers = store.list(&ListFilter {
        kind: Some(Kind::Paper),
        ..Default::default()
    })?;
    Ok(papers
        .iter()
        .map(crate::bibtex::entry_for)
        .collect::<Vec<_>>()
        .join("\n\n")
        + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewItem;

    #[test]
    fn markdown_groups_by_kind_with_links() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db"), "ada").unwrap();
        let p = s
            .add_item(NewItem::new(Kind::Paper, "Mamba paper"))
            .unwrap()
            .id;
        let mut e = NewItem::new(Kind::Experiment, "Scan speed");
        e.fields.hypothesis = Some("chunking helps".into());
        let e = s.add_item(e).unwrap().id;
        s.link(e, p, None).unwrap();
        s.comment(e, "looks promising").unwrap();
        let md = markdown(&s).unwrap();
        let papers = md.find("## Papers").unwrap();
        let exps = md.find("## Experiments").unwrap();
        assert!(papers < exps);
        assert!(md.contains("### E-1 · Scan speed"));
        assert!(md.contains("**Hypothesis.** chunking helps"));
        assert!(md.contains("- relates-to P-1 — Mamba paper"));
        assert!(
            md.contains("- relates-to E-1 — Scan speed"),
            "link shown from the paper too"
        );
        assert!(md.contains("looks promising"));
        assert!(!md.contains("## Tasks"), "empty kinds are left out");
    }
}

/// One run's points of one metric, for [`curves`].
#[derive(Debug, Serialize)]
pub struct CurveExport {
    pub run: String,
    pub metric: String,
    /// `(step, value, wall time in seconds since the run started)`, in step order.
    pub points: Vec<(i64, f64, f64)>,
}

/// Every point of `metrics` (all logged metrics when empty) of each run, run by run.
pub fn curves(store: &Store, runs: &[RunId], metrics: &[String]) -> Result<Vec<CurveExport>> {
    let mut out = Vec::new();
    for &run in runs {
        store.get_run(run)?; // an unknown run is an error naming it
        let keys = if metrics.is_empty() {
            store.metric_keys(run)?
        } else {
            metrics.to_vec()
        };
        for metric in keys {
            let points = store.metric_points(run, &metric)?;
            if !points.is_empty() {
                out.push(CurveExport {
                    run: run.to_string(),
                    metric,
                    points,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "no points logged for {} (of {})",
            runs.iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if metrics.is_empty() {
                "any metric".to_string()
            } else {
                metrics.join(", ")
            }
        )));
    }
    Ok(out)
}

/// [`curves`] as CSV: `run,metric,step,wall_time_s,value`, one line per point, values in full
/// precision (shortest text that reads back as the same number).
pub fn curves_csv(curves: &[CurveExport]) -> String {
    let mut out = String::from("run,metric,step,wall_time_s,value\n");
    for c in curves {
        let metric = csv_field(&c.metric);
        for (step, value, wall) in &c.points {
            let _ = writeln!(out, "{},{metric},{step},{wall},{value}", c.run);
        }
    }
    out
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
