//! Comparing runs: flattened config snapshots, the keys that differ, final and best
//! metrics, progress and ETA. Pure functions over store data (no I/O).
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::Result;
use crate::model::RunId;
use crate::store::{Run, Store};

/// A TOML config snapshot as `section.key = value` pairs (values in TOML syntax).
pub fn flatten_config(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(table) = text.parse::<toml::Table>() {
        flatten_into("", &toml::Value::Table(table), &mut out);
    }
    out
}

fn flatten_into(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(&key, v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// A JSON value's leaves under dotted keys (`outer.inner`), in the objects' order; an empty
/// object has none.
pub fn dotted_leaves(v: &serde_json::Value) -> Vec<(String, &serde_json::Value)> {
    fn walk<'a>(
        prefix: &str,
        v: &'a serde_json::Value,
        out: &mut Vec<(String, &'a serde_json::Value)>,
    ) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            leaf => out.push((prefix.to_string(), leaf)),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// The keys whose value is not the same in every config (a key missing somewhere differs).
pub fn differing_keys(configs: &[BTreeMap<String, String>]) -> Vec<String> {
    let all: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    all.into_iter()
        .filter(|k| {
            let first = configs.first().and_then(|c| c.get(*k));
            configs.iter().any(|c| c.get(*k) != first)
        })
        .cloned()
        .collect()
}

/// A metric value for people: 4 significant digits; scientific below 0.001 (`3e-5`, not
/// `0.0000`); whole numbers with thousands separators from 10,000 (`57,055`).
pub fn human_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if a >= 1e4 {
        let n = v.round() as i128;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        return if n < 0 { format!("-{out}") } else { out };
    }
    if a < 1e-3 {
        let s = format!("{v:.2e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{mantissa}e{exp}");
    }
    // Four significant digits: as many decimals as the magnitude leaves.
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Whether larger is better for a metric (accuracies), else smaller (losses).
pub fn higher_is_better(key: &str) -> bool {
    let k = key.rsplit('/').next().unwrap_or(key);
    k.starts_with("acc") || k.contains("tokens_per_s")
}

/// One run in a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run: RunId,
    pub status: String,
    pub name: Option<String>,
    /// Values of the differing config keys (same order as [`Comparison::keys`]).
    pub config: BTreeMap<String, Option<String>>,
    /// Final values (of a finished run), or the latest values (of a running one).
    pub final_metrics: BTreeMap<String, f64>,
    /// Best value seen of each loss/accuracy metric.
    pub best_metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub keys: Vec<String>,
    pub runs: Vec<RunSummary>,
    /// Runs whose configs differ only in `train.seed`, two or more per group.
    pub seed_groups: Vec<SeedGroup>,
}

/// Several seeds of one setting: each final metric's mean, sample sd and count.
#[derive(Debug, Clone, Serialize)]
pub struct SeedGroup {
    pub runs: Vec<RunId>,
    /// metric → (mean, sd, n) over the runs that logged it.
    pub final_metrics: BTreeMap<String, (f64, f64, usize)>,
}

fn tracked_for_best(key: &str) -> bool {
    let k = key.rsplit('/').next().unwrap_or(key);
    k.starts_with("loss") || k.starts_with("acc") || k.starts_with("bits_per_char")
}

/// Final and best metrics of a run, from its stored outcome or its metric streams.
pub fn run_metrics(
    store: &Store,
    run: &Run,
) -> Result<(BTreeMap<String, f64>, BTreeMap<String, f64>)> {
    let mut fin: BTreeMap<String, f64> = run
        .final_metrics
        .iter()
        .filter(|(k, _)| !k.starts_with("best/"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let mut best = BTreeMap::new();
    for key in store.metric_keys(run.id)? {
        let series = store.metric_series(run.id, &key)?;
        if let Some(&(_, last)) = series.iter().rev().find(|(_, v)| v.is_finite()) {
            fin.entry(key.clone()).or_insert(last);
        }
        if tracked_for_best(&key) {
            let vals = series.iter().map(|(_, v)| *v).filter(|v| v.is_finite());
            let b = if higher_is_better(&key) {
                vals.fold(f64::NEG_INFINITY, f64::max)
            } else {
                vals.fold(f64::INFINITY, f64::min)
            };
            if b.is_finite() {
                best.insert(key, b);
            }
        }
    }
    Ok((fin, best))
}

/// What a run was made with besides its config, as `run.*` keys, so a comparison shows
/// when runs differ in commit, uncommitted changes, labbook build, CPU, threads or GPU.
pub fn provenance_keys(run: &Run) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let short = |c: &str| c[..c.len().min(12)].to_string();
    if let Some(c) = &run.git_commit {
        let dirty = run
            .git_diff
            .as_deref()
            .is_some_and(|d| !d.trim().is_empty());
        out.insert(
            "run.commit".into(),
            format!("{}{}", short(c), if dirty { "+dirty" } else { "" }),
        );
    }
    if let Some(e) = &run.environment {
        out.insert(
            "run.labbook".into(),
            match &e.labbook_commit {
                Some(c) => format!("{} ({})", e.labbook_version, short(c)),
                None => e.labbook_version.clone(),
            },
        );
        if let Some(cpu) = &e.cpu {
            out.insert("run.cpu".into(), cpu.clone());
        }
        if let Some(t) = e.threads {
            out.insert("run.threads".into(), t.to_string());
        }
        if let Some(g) = &e.gpu {
            out.insert("run.gpu".into(), g.clone());
        }
        if let Some(d) = &e.data {
            out.insert("run.data".into(), d.clone());
        }
    }
    out
}

/// Compares runs: the config keys that differ, and each run's final and best metrics.
pub fn compare(store: &Store, ids: &[RunId]) -> Result<Comparison> {
    let runs = ids
        .iter()
        .map(|&id| store.get_run(id))
        .collect::<Result<Vec<_>>>()?;
    let configs: Vec<_> = runs
        .iter()
        .map(|r| {
            let mut c = flatten_config(&r.config);
            c.extend(provenance_keys(r));
            c
        })
        .collect();
    let keys = differing_keys(&configs);
    let mut out = Vec::new();
    for (r, c) in runs.iter().zip(&configs) {
        let (final_metrics, best_metrics) = run_metrics(store, r)?;
        out.push(RunSummary {
            run: r.id,
            status: r.status.to_string(),
            name: r.name.clone(),
            config: keys
                .iter()
                .map(|k| (k.clone(), c.get(k).cloned()))
                .collect(),
            final_metrics,
            best_metrics,
        });
    }
    let seed_groups = seed_groups(&runs, &out);
    Ok(Comparison {
        keys,
        runs: out,
        seed_groups,
    })
}

/// Groups of two or more runs whose configs are equal but for `train.seed` (provenance such
/// as the commit may differ), in the order of their first run.
fn seed_groups(runs: &[Run], summaries: &[RunSummary]) -> Vec<SeedGroup> {
    let configs: Vec<_> = runs.iter().map(|r| flatten_config(&r.config)).collect();
    let groups = group_by_setting(&configs);
    groups
        .into_iter()
        .filter(|g| g.len() > 1)
        .map(|g| {
            let keys: BTreeSet<&String> = g
                .iter()
                .flat_map(|&i| summaries[i].final_metrics.keys())
                .collect();
            let final_metrics = keys
                .into_iter()
                .map(|k| {
                    let vals: Vec<f64> = g
                        .iter()
                        .filter_map(|&i| summaries[i].final_metrics.get(k).copied())
                        .collect();
                    (k.clone(), mean_sd(&vals))
                })
                .collect();
            SeedGroup {
                runs: g.iter().map(|&i| runs[i].id).collect(),
                final_metrics,
            }
        })
        .collect()
}

/// The config key that tells seeds of one setting apart.
pub const SEED_KEY: &str = "train.seed";

/// Indices of `configs` (flattened) grouped by setting: configs equal but for [`SEED_KEY`]
/// share a group. Groups are in the order of their first member, members in input order.
pub fn group_by_setting(configs: &[BTreeMap<String, String>]) -> Vec<Vec<usize>> {
    let setting = |c: &BTreeMap<String, String>| {
        let mut c = c.clone();
        c.remove(SEED_KEY);
        c
    };
    let settings: Vec<_> = configs.iter().map(setting).collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in 0..settings.len() {
        match groups.iter_mut().find(|g| settings[g[0]] == settings[i]) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// Mean, sample standard deviation (0 for one value) and count.
pub fn mean_sd(vals: &[f64]) -> (f64, f64, usize) {
    let n = vals.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let mean = vals.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 {
        (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    (mean, sd, n)
}

/// One run of an experiment as `show E-n` and the TUI's detail pane list it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentRun {
    pub run: RunId,
    pub status: String,
    pub name: Option<String>,
    /// The run's best eval accuracy at its longest length (else its final loss), as text.
    pub best: Option<String>,
}

/// The runs recorded under experiment `id`, newest first (none for other kinds).
pub fn experiment_runs(store: &Store, id: crate::model::ItemId) -> Result<Vec<ExperimentRun>> {
    if id.kind != crate::model::Kind::Experiment {
        return Ok(Vec::new());
    }
    let mut runs = store.list_runs(&crate::store::RunFilter {
        experiment: Some(id),
        status: None,
    })?;
    runs.sort_by_key(|r| std::cmp::Reverse(r.id.0));
    runs.into_iter()
        .map(|r| {
            let (fin, best) = run_metrics(store, &r)?;
            let acc = best
                .iter()
                .filter(|(k, _)| k.starts_with("eval/acc"))
                .max_by(|a, b| crate::report::eval_order(a.0).cmp(&crate::report::eval_order(b.0)))
                .map(|(k, v)| format!("best {k} {}", human_number(*v)));
            let loss = fin
                .get("loss")
                .map(|v| format!("loss {}", human_number(*v)));
            Ok(ExperimentRun {
                run: r.id,
                status: r.status.to_string(),
                name: r.name.clone(),
                best: acc.or(loss),
            })
        })
        .collect()
}

/// Fraction of the steps done, when the total is known.
pub fn progress(run: &Run) -> Option<f64> {
    run.steps_total
        .filter(|&t| t > 0)
        .map(|t| (run.steps_done as f64 / t as f64).clamp(0.0, 1.0))
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Seconds left for a running run, from its pace so far (`now` as RFC 3339).
pub fn eta_secs(run: &Run, now: &str) -> Option<f64> {
    if run.status != crate::store::RunStatus::Running || run.steps_done <= 0 {
        return None;
    }
    let total = run.steps_total?;
    let started = parse_time(run.started_at.as_deref()?)?;
    let elapsed = (parse_time(now)? - started).as_seconds_f64();
    let per_step = elapsed / run.steps_done as f64;
    Some(per_step * (total - run.steps_done).max(0) as f64)
}

/// "1h02m", "3m05s", "12s".
pub fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_leaves_names_nested_values_in_order() {
        let v = serde_json::json!({"train": {"lr": 0.001, "steps": 20}, "name": "a", "empty": {}});
        let leaves: Vec<(String, String)> = dotted_leaves(&v)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        let keys: Vec<&str> = leaves.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.len(), 3, "{leaves:?}");
        for (key, value) in [
            ("train.lr", "0.001"),
            ("train.steps", "20"),
            ("name", "\"a\""),
        ] {
            assert!(
                leaves.contains(&(key.to_string(), value.to_string())),
                "{key}: {leaves:?}"
            );
        }
    }

    #[test]
    fn only_differing_keys_are_kept() {
        let a = flatten_config("[model]\nkind = \"mamba\"\nd_model = 16\n[train]\nlr = 0.001\n");
        let b = flatten_config(
            "[model]\nkind = \"mamba\"\nd_model = 32\n[train]\nlr = 0.001\nx = [1, 2]\n",
        );
        assert_eq!(a["model.kind"], "mamba");
        assert_eq!(differing_keys(&[a, b]), vec!["model.d_model", "train.x"]);
    }

    #[test]
    fn durations_and_directions() {
        assert_eq!(fmt_duration(5.0), "5s");
        assert_eq!(fmt_duration(185.0), "3m05s");
        assert_eq!(fmt_duration(3720.0), "1h02m");
        assert!(higher_is_better("eval/acc@16"));
        assert!(!higher_is_better("eval/loss@16"));
    }
}

#[cfg(test)]
mod number_tests {
    use super::human_number;

    #[test]
    fn numbers_are_formatted_by_magnitude() {
        for (v, want) in [
            (3e-5, "3e-5"),
            (3.14159e-5, "3.14e-5"),
            (0.0003, "3e-4"),
            (0.001, "0.001"),
            (2.6415481567382813, "2.642"),
            (0.12345, "0.1235"),
            (0.5, "0.5"),
            (123.456, "123.5"),
            (9999.4, "9999"),
            (57055.2188, "57,055"),
            (1234567.0, "1,234,567"),
            (-20000.0, "-20,000"),
            (0.0, "0"),
            (1.0, "1"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(human_number(v), want, "{v}");
        }
    }
}
