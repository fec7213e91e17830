//! Markdown reports of an experiment (hypothesis, linked items, run table, conclusion)
//! with PNG plots of its curves, and the curve extraction shared with `labbook plot`.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::compare;
use crate::error::{Error, Result};
use crate::model::{ItemId, Kind, RunId};
use crate::plot::{self, Curve};
use crate::store::{RunFilter, Store};

/// One metric of several runs, smoothed over `smooth` points, as curves labelled by run.
pub fn curves(store: &Store, runs: &[RunId], metric: &str, smooth: usize) -> Result<Vec<Curve>> {
    let all: Vec<_> = runs
        .iter()
        .map(|&id| store.get_run(id))
        .collect::<Result<_>>()?;
    let configs: Vec<_> = all
        .iter()
        .map(|r| compare::flatten_config(&r.config))
        .collect();
    let differ = compare::differing_keys(&configs);
    let mut out = Vec::new();
    for ((&id, run), cfg) in runs.iter().zip(&all).zip(&configs) {
        let series = store.metric_series(id, metric)?;
        if series.is_empty() {
            continue;
        }
        let pts: Vec<(f64, f64)> = series.iter().map(|&(s, v)| (s as f64, v)).collect();
        // Runs are told apart by every config key that differs between them (shortest
        // first, so the labels stay readable), else by name.
        let label = if !differ.is_empty() {
            let mut keys: Vec<&String> = differ.iter().collect();
            keys.sort_by_key(|k| (k.rsplit('.').next().unwrap_or(k).len(), k.as_str()));
            let kv: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}={}",
                        k.rsplit('.').next().unwrap_or(k),
                        cfg.get(*k).map(String::as_str).unwrap_or("-")
                    )
                })
                .collect();
            format!("{id} {}", kv.join(" "))
        } else {
            match &run.name {
                Some(n) => format!("{id} {n}"),
                None => id.to_string(),
            }
        };
        out.push(Curve {
            label,
            points: plot::smooth(&pts, smooth),
        });
    }
    if out.is_empty() {
        let names: Vec<String> = runs.iter().map(|r| r.to_string()).collect();
        let mut logged: Vec<String> = Vec::new();
        for &id in runs {
            logged.extend(store.metric_keys(id)?);
        }
        logged.sort_by(|a, b| eval_order(a).cmp(&eval_order(b)));
        logged.dedup();
        return Err(Error::Invalid(format!(
            "no `{metric}` values logged for {}; logged metrics: {}",
            names.join(", "),
            if logged.is_empty() {
                "none".to_string()
            } else {
                logged.join(", ")
            }
        )));
    }
    Ok(out)
}

/// What a report wrote.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub markdown: PathBuf,
    pub plots: Vec<PathBuf>,
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Writes `report.md` and its PNG plots for experiment `exp` into `dir`.
pub fn experiment_report(store: &Store, exp: ItemId, dir: &Path) -> Result<Report> {
    let item = store.get(exp)?;
    if item.kind != Kind::Experiment {
        return Err(Error::Invalid(format!("{exp} is not an experiment (E-n)")));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let runs = store.list_runs(&RunFilter {
        experiment: Some(exp),
        ..Default::default()
    })?;
    let mut md = String::new();
    let _ = writeln!(md, "# {exp}: {}\n", item.title);
    let _ = writeln!(md, "Status: {} · {} run(s)\n", item.status, runs.len());
    if let Some(h) = item
        .fields
        .get("hypothesis")
        .filter(|h| !h.trim().is_empty())
    {
        let _ = writeln!(md, "## Hypothesis\n\n{}\n", h.trim());
    }
    if !item.body.trim().is_empty() {
        let _ = writeln!(md, "## Notes\n\n{}\n", item.body.trim());
    }
    let links = store.links_of(exp)?;
    if !links.is_empty() {
        let _ = writeln!(md, "## Linked ideas and papers\n");
        for l in &links {
            let _ = writeln!(md, "- {} **{}** {}", l.label, l.other, l.other_title);
        }
        md.push('\n');
    }
    let ids: Vec<RunId> = runs.iter().map(|r| r.id).collect();
    let mut plots = Vec::new();
    if !runs.is_empty() {
        let cmp = compare::compare(store, &ids)?;
        let _ = writeln!(md, "## Runs\n");
        let mut head = vec!["run".to_string(), "status".to_string(), "steps".to_string()];
        head.extend(cmp.keys.iter().cloned());
        let shown: Vec<&str> = ["loss", "accuracy"]
            .into_iter()
            .filter(|k| cmp.runs.iter().any(|r| r.final_metrics.contains_key(*k)))
            .collect();
        let best_eval: Vec<String> = {
            let mut keys: Vec<String> = cmp
                .runs
                .iter()
                .flat_map(|r| r.best_metrics.keys().cloned())
                .filter(|k| k.starts_with("eval/acc"))
                .collect();
            keys.sort_by(|a, b| eval_order(a).cmp(&eval_order(b)));
            keys.dedup();
            keys
        };
        head.extend(shown.iter().map(|k| format!("final {k}")));
        head.extend(best_eval.iter().map(|k| format!("best {k}")));
        let _ = writeln!(md, "| {} |", head.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(head.len()));
        for (r, s) in runs.iter().zip(&cmp.runs) {
            let mut row = vec![
                r.id.to_string(),
                r.status.to_string(),
                format!(
                    "{}/{}",
                    r.steps_done,
                    r.steps_total.map(|t| t.to_string()).unwrap_or("?".into())
                ),
            ];
            row.extend(
                cmp.keys
                    .iter()
                    .map(|k| md_escape(s.config[k].as_deref().unwrap_or("-"))),
            );
            let f = |m: &std::collections::BTreeMap<String, f64>, k: &str| {
                m.get(k)
                    .map(|v| compare::human_number(*v))
                    .unwrap_or("-".into())
            };
            row.extend(shown.iter().map(|k| f(&s.final_metrics, k)));
            row.extend(best_eval.iter().map(|k| f(&s.best_metrics, k)));
            let _ = writeln!(md, "| {} |", row.join(" | "));
        }
        if cmp.keys.is_empty() && runs.len() > 1 {
            let _ = writeln!(md, "\nAll runs share the same config.");
        }
        md.push('\n');
        let mut metrics: Vec<String> = vec!["loss".into(), "accuracy".into()];
        metrics.extend(best_eval.iter().cloned());
        let mut figs = String::new();
        for m in metrics {
            let Ok(curves) = curves(store, &ids, &m, if m.starts_with("eval/") { 1 } else { 10 })
            else {
                continue;
            };
            let file = format!("{}.png", m.replace(['/', '@'], "_"));
            let path = dir.join(&file);
            let log = m == "loss";
            plot::plot_png(&path, &format!("{exp}: {m}"), &m, &curves, log)?;
            let _ = writeln!(figs, "![{m}]({file})\n");
            plots.push(path);
        }
        if !figs.is_empty() {
            let _ = writeln!(md, "## Curves\n\n{figs}");
        }
    }
    if let Some(c) = item
        .fields
        .get("conclusion")
        .filter(|c| !c.trim().is_empty())
    {
        let _ = writeln!(md, "## Conclusion\n\n{}\n", c.trim());
    }
    let markdown = dir.join("report.md");
    std::fs::write(&markdown, md).map_err(|e| Error::io(&markdown, e))?;
    Ok(Report { markdown, plots })
}

/// Sort key of an eval metric: its name, then its length as a number (`eval/acc@256`
/// before `eval/acc@1024`, which text order puts first).
pub fn eval_order(key: &str) -> (&str, u64, &str) {
    match key.rsplit_once('@') {
        Some((name, n)) => match n.parse() {
            Ok(len) => (name, len, ""),
            Err(_) => (name, u64::MAX, n),
        },
        None => (key, 0, ""),
    }
}
