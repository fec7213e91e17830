//! `labbook sync`: two-way sync with the GitHub repo named in `[github]`.
use anyhow::{Result, anyhow};
use clap::Args as ClapArgs;
use labbook::github::{self, Token};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Print one line per change (never the token).
    #[arg(short, long)]
    verbose: bool,
}

pub fn cmd_sync(env: &Env, a: Args) -> Result<()> {
    let cfg = env.config.github.clone().ok_or_else(|| {
        anyhow!(
            "no [github] section in the config; add `repo = \"owner/name\"` (see docs/github.md)"
        )
    })?;
    let token = Token::discover()?;
    let mut store = env.open()?;
    let report = github::sync(&mut store, &cfg, &token)?;
    let remote = labbook::remote::sync_remote_runs(&mut store, &cfg, &token)?;
    let summary = store.sync_summary()?;
    if env.json {
        let mut v = serde_json::to_value(&report)?;
        v["remote_runs"] = serde_json::to_value(&remote)?;
        return super::output::json(&v);
    }
    if a.verbose {
        for e in &report.events {
            println!("{e}");
        }
    }
    let mut parts = Vec::new();
    let mut part = |n: usize, what: &str| {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    };
    part(report.imported, "imported");
    part(report.created, "issues created");
    part(report.adopted, "adopted");
    part(report.pulled, "updated here");
    part(report.pushed, "updated on GitHub");
    part(report.comments_in, "comments in");
    part(report.comments_out, "comments out");
    let what = if parts.is_empty() {
        "already in step".to_string()
    } else {
        parts.join(", ")
    };
    println!(
        "synced with {}: {what} ({} requests)",
        report.repo, report.requests
    );
    for s in &report.skipped {
        println!("not synced: {s}");
    }
    for line in &report.ignored {
        println!("{line} (a marker it may not use; left alone)");
    }
    for e in &remote.events {
        println!("{e}");
    }
    if remote.waiting > 0 {
        println!("{} remote run(s) still waiting for results", remote.waiting);
    }
    if summary.conflicts > 0 {
        println!(
            "{} conflict(s): see `labbook conflicts`, settle with `labbook resolve ID FIELD --mine|--theirs|--edit`",
            summary.conflicts
        );
    }
    Ok(())
}
