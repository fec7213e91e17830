//! Markdown reports of an experiment (hypothesis, linked items, run table, conclusion)
//! with PNG plots of its curves, and the curve extraction shared with `labbook plot`.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::compare;
use crate::error::{Error, Result};
use crate::model::{ItemId, Kind, RunId};
use crate::plot::{self, Curve};
use crate::store::{RunFilter, Store};

/// How [`curves`] draws runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CurveOptions {
    /// Moving average over this many points (≤ 1: none).
    pub smooth: usize,
    /// x is wall-clock seconds since each run started, not the step.
    pub time: bool,
    /// Runs whose configs differ only in `train.seed` become one mean curve with a ±1 sd
    /// band (over the steps all of them logged).
    pub group_seeds: bool,
}

pub use compare::SEED_KEY;

/// One metric of several runs as labelled curves: one per run, or per group of seeds (see
/// [`CurveOptions`]). Runs are told apart in the labels by every config key that differs
/// between the curves, shortest first.
pub fn curves(
    store: &Store,
    runs: &[RunId],
    metric: &str,
    opts: CurveOptions,
) -> Result<Vec<Curve>> {
    let all: Vec<_> = runs
        .iter()
        .map(|&id| store.get_run(id))
        .collect::<Result<_>>()?;
    let mut configs: Vec<_> = all
        .iter()
        .map(|r| compare::flatten_config(&r.config))
        .collect();
    // Groups in the order of their first run; without grouping, one run each.
    let groups = if opts.group_seeds {
        compare::group_by_setting(&configs)
    } else {
        (0..runs.len()).map(|i| vec![i]).collect()
    };
    if opts.group_seeds {
        for c in &mut configs {
            c.remove(SEED_KEY);
        }
    }
    let heads: Vec<_> = groups.iter().map(|g| configs[g[0]].clone()).collect();
    let differ = compare::differing_keys(&heads);
    let mut out = Vec::new();
    for (group, cfg) in groups.iter().zip(&heads) {
        let mut series = Vec::new();
        for &i in group {
            let pts: Vec<(f64, f64)> = store
                .metric_points(runs[i], metric)?
                .iter()
                .map(|&(step, v, wall)| (if opts.time { wall } else { step as f64 }, v))
                .collect();
            if !pts.is_empty() {
                series.push((runs[i], pts));
            }
        }
        if series.is_empty() {
            continue;
        }
        let ids: Vec<String> = series.iter().map(|(id, _)| id.to_string()).collect();
        let name = match (series.len(), &all[group[0]].name) {
            (1, Some(n)) if differ.is_empty() => format!("{} {n}", ids[0]),
            (1, _) => ids[0].clone(),
            (n, _) => format!("{} (n={n}, ±1 sd)", ids.join(",")),
        };
        let label = if differ.is_empty() {
            name
        } else {
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
            format!("{name} {}", kv.join(" "))
        };
        let curve = if series.len() == 1 {
            Curve {
                label,
                points: plot::smooth(&series[0].1, opts.smooth),
                band: Vec::new(),
            }
        } else {
            mean_and_sd(&series, opts.smooth, label)
        };
        out.push(curve);
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

/// The mean curve of a group of runs and its ±1 sd band (sample sd), over the points every
/// run has: the i-th point of each, up to the shortest run (runs of one config log the same
/// steps; x is the mean of theirs). Each run is smoothed first.
fn mean_and_sd(series: &[(RunId, Vec<(f64, f64)>)], smooth: usize, label: String) -> Curve {
    let smoothed: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(_, p)| plot::smooth(p, smooth))
        .collect();
    let len = smoothed.iter().map(Vec::len).min().unwrap_or(0);
    let n = smoothed.len() as f64;
    let mut mean = Vec::with_capacity(len);
    let mut band = Vec::with_capacity(len);
    for i in 0..len {
        let x = smoothed.iter().map(|s| s[i].0).sum::<f64>() / n;
        let (m, sd, _) = compare::mean_sd(&smoothed.iter().map(|s| s[i].1).collect::<Vec<_>>());
        mean.push((x, m));
        band.push((x, m - sd, m + sd));
    }
    Curve {
        label,
        points: mean,
        band,
    }
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
            let opts = CurveOptions {
                smooth: if m.starts_with("eval/") { 1 } else { 10 },
                time: false,
                group_seeds: true,
            };
            let Ok(curves) = curves(store, &ids, &m, opts) else {
                continue;
            };
            let file = format!("{}.png", m.replace(['/', '@'], "_"));
            let path = dir.join(&file);
            let log = m == "loss";
            let axes = plot::Axes { log, time: false };
            plot::plot_file(&path, &format!("{exp}: {m}"), &m, &curves, axes)?;
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
