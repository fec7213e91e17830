use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::Store;
use labbook::model::{AnyId, ItemId, RunId};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// T-n, P-n, I-n, E-n or R-n.
    id: AnyId,
    /// Also print the change history.
    #[arg(long)]
    history: bool,
}

pub fn cmd_show(env: &Env, a: Args) -> Result<()> {
    let store = env.open()?;
    match a.id {
        AnyId::Item(id) => show_item(&store, id, a.history, env.json),
        AnyId::Run(id) => show_run(&store, id, env.json),
    }
}

fn show_item(store: &Store, id: ItemId, with_history: bool, json: bool) -> Result<()> {
    let item = store.get(id)?;
    let links = store.links_of(id)?;
    let comments = store.comments(id)?;
    let history = store.history(id)?;
    let runs = labbook::compare::experiment_runs(store, id)?;
    if json {
        let mut v = serde_json::json!({
            "item": item, "links": links, "comments": comments, "history": history,
        });
        if id.kind == labbook::model::Kind::Experiment {
            v["runs"] = serde_json::to_value(&runs)?;
        }
        return super::output::json(&v);
    }
    println!("{}  {}", item.id, item.title);
    println!(
        "{} · {}{} · by {} · created {} · updated {}",
        item.kind,
        item.status,
        if item.archived { " (archived)" } else { "" },
        item.author,
        &item.created_at[..16],
        &item.updated_at[..16]
    );
    if !item.tags.is_empty() {
        println!("tags: {}", item.tags.join(", "));
    }
    if let Some(s) = store.sync_state(id)? {
        let state = match s.status {
            labbook::github::SyncStatus::Synced => "in step",
            labbook::github::SyncStatus::Modified => "changed here since the last sync",
            labbook::github::SyncStatus::Conflict => "conflict: see `labbook conflicts`",
        };
        println!("github: {}#{} ({state})", s.repo, s.issue);
    }
    for (k, v) in item.fields.entries() {
        if k == "bibtex" {
            continue;
        }
        println!("{k}: {v}");
    }
    if !item.body.trim().is_empty() {
        println!("\n{}", item.body.trim_end());
    }
    if !links.is_empty() {
        println!("\nLinks:");
        for l in &links {
            println!(
                "  {:<14} {:<6} {} [{}]",
                l.label,
                l.other.to_string(),
                l.other_title,
                l.other_status
            );
        }
    }
    if !runs.is_empty() {
        println!("\nRuns (newest first):");
        for r in &runs {
            println!(
                "  {:<6} {:<10} {:<28} {}",
                r.run.to_string(),
                r.status,
                r.name.as_deref().unwrap_or(""),
                r.best.as_deref().unwrap_or("")
            );
        }
    }
    if !comments.is_empty() {
        println!("\nComments:");
        for c in &comments {
            println!("  {} ({}): {}", c.author, &c.created_at[..16], c.body);
        }
    }
    if with_history {
        println!("\nHistory:");
        for h in &history {
            println!(
                "  {} {} {}: {} → {}",
                &h.at[..16],
                h.author,
                h.field,
                h.old.as_deref().unwrap_or("∅"),
                h.new.as_deref().unwrap_or("∅")
            );
        }
    }
    Ok(())
}

fn show_run(store: &Store, id: RunId, json: bool) -> Result<()> {
    let run = store.get_run(id)?;
    if json {
        return super::output::json(&run);
    }
    println!("{}  {}", run.id, run.name.as_deref().unwrap_or(""));
    println!(
        "status {} · backend {} · host {} · seed {}",
        run.status,
        run.backend.as_deref().unwrap_or("?"),
        run.host.as_deref().unwrap_or("?"),
        run.seed
            .map(|s| s.to_string())
            .unwrap_or_else(|| "?".into())
    );
    if let Some(e) = run.experiment {
        println!("experiment {e}");
    }
    if let Some(c) = &run.git_commit {
        let dirty = if run.git_diff.as_deref().is_some_and(|d| !d.is_empty()) {
            " (dirty: `labbook show R-n --json` has the diff, untracked files included)"
        } else {
            ""
        };
        println!("commit {c}{dirty}");
    }
    if let Some(e) = &run.environment {
        let build = e
            .labbook_commit
            .as_deref()
            .map(|c| format!(" (build {})", &c[..c.len().min(12)]))
            .unwrap_or_default();
        println!(
            "labbook {}{build} · {} · cpu {} · {} threads",
            e.labbook_version,
            e.os,
            e.cpu.as_deref().unwrap_or("?"),
            e.threads.map(|t| t.to_string()).unwrap_or("?".into())
        );
        if let Some(g) = &e.gpu {
            println!("gpu {g}");
        }
        if let Some(d) = &e.data {
            println!("data {d}");
        }
    }
    if let Some(r) = labbook::remote::request::remote_ref(store, id) {
        match r.issue {
            Some(n) => println!("remote request {}#{n}", r.repo),
            None => println!("remote request in {} (issue not filed)", r.repo),
        }
    }
    println!(
        "created {} · started {} · finished {}",
        run.created_at,
        run.started_at.as_deref().unwrap_or("-"),
        run.finished_at.as_deref().unwrap_or("-")
    );
    println!(
        "steps {}/{}",
        run.steps_done,
        run.steps_total.map(|s| s.to_string()).unwrap_or("?".into())
    );
    if let Some(e) = &run.error {
        println!("error: {e}");
    }
    if !run.final_metrics.is_empty() {
        println!("\nFinal metrics:");
        for (k, v) in &run.final_metrics {
            println!("  {k:<20} {}", labbook::compare::human_number(*v));
        }
    }
    println!("\nConfig:\n{}", run.config.trim_end());
    Ok(())
}
