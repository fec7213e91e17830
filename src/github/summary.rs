//! The summary comment a finished run leaves on its experiment: final metrics, the
//! config diff against the experiment's first run, the commit. It is added as a notebook
//! comment carrying a run marker, so it is created once and reaches GitHub through the
//! normal comment sync (exactly once, even offline).
use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::RunId;
use crate::store::{RunFilter, Store};

fn run_marker(id: RunId) -> String {
    format!("<!-- labbook:run:{id} -->")
}

/// Adds the summary comment of finished run `run_id` to its experiment. Returns the new
/// comment's id, or `None` if the run already has one (calling twice is harmless).
pub fn post_run_summary(store: &mut Store, run_id: RunId) -> Result<Option<i64>> {
    let run = store.get_run(run_id)?;
    let exp = run
        .experiment
        .ok_or_else(|| Error::Invalid(format!("{run_id} belongs to no experiment")))?;
    if !run.status.is_finished() {
        return Err(Error::Invalid(format!(
            "{run_id} is {}; only finished runs get a summary",
            run.status
        )));
    }
    let marker = run_marker(run_id);
    if store
        .comments(exp)?
        .iter()
        .any(|c| c.body.contains(&marker))
    {
        return Ok(None);
    }
    let text = run_summary_markdown(store, run_id)?;
    Ok(Some(store.comment(exp, &text)?.id))
}

/// The summary's Markdown (metrics table, config diff vs the first run, commit).
pub fn run_summary_markdown(store: &Store, run_id: RunId) -> Result<String> {
    let run = store.get_run(run_id)?;
    let mut out = String::new();
    let name = run
        .name
        .as_deref()
        .map(|n| format!(" `{n}`"))
        .unwrap_or_default();
    out.push_str(&format!("### Run {run_id}{name}: {}\n\n", run.status));
    if let Some(e) = &run.error {
        out.push_str(&format!(
            "**Error:** {}\n\n",
            e.lines().next().unwrap_or("")
        ));
    }
    if run.final_metrics.is_empty() {
        out.push_str("No final metrics.\n\n");
    } else {
        out.push_str("| metric | value |\n|---|---|\n");
        for (k, v) in &run.final_metrics {
            out.push_str(&format!("| {k} | {} |\n", fmt_num(*v)));
        }
        out.push('\n');
    }
    if let Some(exp) = run.experiment {
        let runs = store.list_runs(&RunFilter {
            experiment: Some(exp),
            status: None,
        })?;
        match runs.first() {
            Some(first) if first.id != run.id => {
                let a = flatten_config(&first.config);
                let b = flatten_config(&run.config);
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                let diff: Vec<_> = keys
                    .into_iter()
                    .filter(|k| a.get(*k) != b.get(*k))
                    .collect();
                if diff.is_empty() {
                    out.push_str(&format!(
                        "Config: same as {} (first run of {exp}).\n\n",
                        first.id
                    ));
                } else {
                    out.push_str(&format!(
                        "Config vs {} (first run of {exp}):\n\n| key | {} | {run_id} |\n|---|---|---|\n",
                        first.id, first.id
                    ));
                    for k in diff {
                        let cell = |m: &BTreeMap<String, String>| {
                            m.get(k).cloned().unwrap_or_else(|| "—".into())
                        };
                        out.push_str(&format!("| {k} | {} | {} |\n", cell(&a), cell(&b)));
                    }
                    out.push('\n');
                }
            }
            _ => out.push_str(&format!("First run of {exp}.\n\n")),
        }
    }
    if let Some(c) = &run.git_commit {
        // GitHub links a bare commit SHA to the commit in the same repository.
        let dirty = if run.git_diff.as_deref().is_some_and(|d| !d.is_empty()) {
            " (with uncommitted changes)"
        } else {
            ""
        };
        out.push_str(&format!("Commit: {c}{dirty}\n\n"));
    }
    out.push_str(&run_marker(run_id));
    Ok(out)
}

fn fmt_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        v.to_string()
    }
}

/// A run config (JSON or TOML) as dotted keys → values.
fn flatten_config(text: &str) -> BTreeMap<String, String> {
    let value: Option<Value> = serde_json::from_str(text).ok().or_else(|| {
        toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| serde_json::to_value(t).ok())
    });
    let mut out = BTreeMap::new();
    if let Some(v) = value {
        for (key, leaf) in crate::compare::dotted_leaves(&v) {
            out.insert(key, leaf.to_string());
        }
    } else if !text.trim().is_empty() {
        out.insert("config".into(), text.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, NewItem};
    use crate::store::{NewRun, RunStatus, test_util::temp_store};

    #[test]
    fn summary_has_metrics_diff_commit_and_is_added_once() {
        let (_d, mut store) = temp_store();
        let exp = store
            .add_item(NewItem::new(Kind::Experiment, "Conv sweep"))
            .unwrap()
            .id;
        let new_run = |config: &str| NewRun {
            experiment: Some(exp),
            config: config.into(),
            git_commit: Some("0123456789abcdef".into()),
            ..Default::default()
        };
        let r1 = store
            .create_run(&new_run("[model]\nd_conv = 4\nlr = 0.001\n"))
            .unwrap();
        let r2 = store
            .create_run(&new_run("[model]\nd_conv = 8\nlr = 0.001\n"))
            .unwrap();
        assert!(post_run_summary(&mut store, r2).is_err(), "not finished");
        let metrics = BTreeMap::from([("loss".to_string(), 0.25), ("acc".to_string(), 0.9)]);
        store
            .finish_run(r2, RunStatus::Succeeded, &metrics, None)
            .unwrap();
        let md = run_summary_markdown(&store, r2).unwrap();
        assert!(md.contains("| loss | 0.25 |"), "{md}");
        assert!(md.contains("| model.d_conv | 4 | 8 |"), "{md}");
        assert!(!md.contains("model.lr"), "{md}");
        assert!(md.contains("Commit: 0123456789abcdef"), "{md}");
        let _ = r1;
        assert!(post_run_summary(&mut store, r2).unwrap().is_some());
        assert!(post_run_summary(&mut store, r2).unwrap().is_none());
        assert_eq!(store.comments(exp).unwrap().len(), 1);
    }
}
