use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::compare::{self, fmt_duration};
use labbook::model::{ItemId, RunId};
use labbook::store::{RunFilter, RunStatus};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Only runs of this experiment.
    #[arg(long, short = 'e', value_name = "E-n")]
    experiment: Option<ItemId>,
    /// Only runs in this status (queued, running, succeeded, failed, cancelled, crashed).
    #[arg(long, short = 's')]
    status: Option<RunStatus>,
    /// Only runs of this sweep.
    #[arg(long)]
    sweep: Option<String>,
}

#[derive(ClapArgs)]
pub struct CompareArgs {
    /// Runs to compare (R-n R-m ...).
    #[arg(required = true, num_args = 2.., value_name = "R-n")]
    runs: Vec<RunId>,
}

/// The metrics shown in the run table, when present.
fn key_metrics(m: &std::collections::BTreeMap<String, f64>) -> String {
    let mut parts = Vec::new();
    if let Some(v) = m.get("loss") {
        parts.push(format!("loss {}", labbook::compare::human_number(*v)));
    }
    if let Some(v) = m.get("accuracy") {
        parts.push(format!("acc {v:.3}"));
    }
    if let Some((k, v)) = m.iter().find(|(k, _)| k.starts_with("best/eval/acc")) {
        parts.push(format!("{} {v:.3}", k.trim_start_matches("best/")));
    }
    parts.join("  ")
}

pub fn cmd_runs(env: &Env, a: Args) -> Result<()> {
    let store = env.open()?;
    let mut runs = store.list_runs(&RunFilter {
        experiment: a.experiment,
        status: a.status,
    })?;
    if let Some(s) = &a.sweep {
        runs.retain(|r| r.sweep.as_deref() == Some(s.as_str()));
    }
    if env.json {
        return super::output::json(&runs);
    }
    if runs.is_empty() {
        println!("No matching runs.");
        return Ok(());
    }
    let now = labbook::store::now();
    let rows: Vec<[String; 6]> = runs
        .iter()
        .map(|r| {
            let progress = match (r.steps_total, compare::eta_secs(r, &now)) {
                (Some(t), Some(eta)) => format!("{}/{t} eta {}", r.steps_done, fmt_duration(eta)),
                (Some(t), None) => format!("{}/{t}", r.steps_done),
                (None, _) => r.steps_done.to_string(),
            };
            [
                r.id.to_string(),
                r.status.to_string(),
                progress,
                r.experiment.map(|e| e.to_string()).unwrap_or_default(),
                r.name.clone().unwrap_or_default(),
                key_metrics(&r.final_metrics),
            ]
        })
        .collect();
    print_table(
        &["RUN", "STATUS", "PROGRESS", "EXP", "CONFIG", "FINAL"],
        &rows,
    );
    Ok(())
}

fn print_table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) {
    let mut w = head.map(|h| h.chars().count());
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn cmd_compare(env: &Env, a: CompareArgs) -> Result<()> {
    let store = env.open()?;
    let cmp = compare::compare(&store, &a.runs)?;
    if env.json {
        return super::output::json(&cmp);
    }
    // One column per run; rows are differing config keys, then final and best metrics.
    let mut header = vec![String::new()];
    header.extend(cmp.runs.iter().map(|r| r.run.to_string()));
    let mut rows: Vec<Vec<String>> = vec![header];
    let mut status = vec!["status".to_string()];
    status.extend(cmp.runs.iter().map(|r| r.status.clone()));
    rows.push(status);
    if cmp.keys.is_empty() {
        rows.push(vec!["(configs identical)".to_string()]);
    }
    for k in &cmp.keys {
        let mut row = vec![k.clone()];
        row.extend(
            cmp.runs
                .iter()
                .map(|r| r.config[k].clone().unwrap_or_else(|| "-".into())),
        );
        rows.push(row);
    }
    let metric_rows = |rows: &mut Vec<Vec<String>>, prefix: &str, best: bool| {
        let keys: std::collections::BTreeSet<&String> = cmp
            .runs
            .iter()
            .flat_map(|r| {
                if best {
                    r.best_metrics.keys()
                } else {
                    r.final_metrics.keys()
                }
            })
            .collect();
        for k in keys {
            let mut row = vec![format!("{prefix}{k}")];
            row.extend(cmp.runs.iter().map(|r| {
                let m = if best {
                    &r.best_metrics
                } else {
                    &r.final_metrics
                };
                m.get(k)
                    .map(|v| labbook::compare::human_number(*v))
                    .unwrap_or_else(|| "-".into())
            }));
            rows.push(row);
        }
    };
    metric_rows(&mut rows, "final ", false);
    metric_rows(&mut rows, "best ", true);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0; cols];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in &rows {
        let mut s = String::new();
        for (i, c) in r.iter().enumerate() {
            if i == 0 {
                s.push_str(&format!("{c:<width$}", width = w[0]));
            } else {
                s.push_str(&format!("  {c:>width$}", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    }
    for g in &cmp.seed_groups {
        let ids: Vec<String> = g.runs.iter().map(|r| r.to_string()).collect();
        println!(
            "\nseeds {} (configs equal but for train.seed): mean ± sd",
            ids.join(", ")
        );
        let width = g.final_metrics.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, (mean, sd, n)) in &g.final_metrics {
            let h = labbook::compare::human_number;
            println!("  {k:<width$}  {} ± {} (n={n})", h(*mean), h(*sd));
        }
    }
    Ok(())
}
