//! `labbook sync`: two-way sync with the GitHub repo named in `[github]`.
use anyhow::{Result, anyhow};
use clap::Args as ClapArgs;
use labbook::github::{self, SyncReport, SyncSummary, Token};
use labbook::remote::SyncRemoteReport;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Print one line per change (never the token).
    #[arg(short, long)]
    verbose: bool,
}

/// What one sync did: the issues, the remote runs it brought back, and how the notebook
/// stands with GitHub afterwards.
#[derive(Debug)]
pub struct Synced {
    pub report: SyncReport,
    pub remote: SyncRemoteReport,
    pub summary: SyncSummary,
}

/// Syncs the notebook with `[github] repo` and imports the results of remote runs. Prints
/// nothing, so the TUI can run it on a thread of its own.
pub fn sync(env: &Env) -> Result<Synced> {
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
    Ok(Synced {
        report,
        remote,
        summary,
    })
}

impl Synced {
    /// What `labbook sync` says when done (the `--verbose` events come before these).
    pub fn lines(&self) -> Vec<String> {
        let (report, remote) = (&self.report, &self.remote);
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
        let mut lines = vec![format!(
            "synced with {}: {what} ({} requests)",
            report.repo, report.requests
        )];
        lines.extend(report.skipped.iter().map(|s| format!("not synced: {s}")));
        lines.extend(
            report
                .ignored
                .iter()
                .map(|l| format!("{l} (a marker it may not use; left alone)")),
        );
        lines.extend(remote.events.iter().cloned());
        if remote.waiting > 0 {
            lines.push(format!(
                "{} remote run(s) still waiting for results",
                remote.waiting
            ));
        }
        if self.summary.conflicts > 0 {
            lines.push(format!(
                "{} conflict(s): see `labbook conflicts`, settle with `labbook resolve ID FIELD --mine|--theirs|--edit`",
                self.summary.conflicts
            ));
        }
        lines
    }

    /// The one line the TUI's status bar has room for: the last thing `labbook sync`
    /// says, since what needs doing (conflicts, waiting runs) is said last.
    pub fn status_line(&self) -> String {
        let text = self.lines().join("\n");
        let text = labbook::sanitize::for_terminal(&text);
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("sync done")
            .to_string()
    }
}

pub fn cmd_sync(env: &Env, a: Args) -> Result<()> {
    let synced = sync(env)?;
    if env.json {
        let mut v = serde_json::to_value(&synced.report)?;
        v["remote_runs"] = serde_json::to_value(&synced.remote)?;
        return super::output::json(&v);
    }
    if a.verbose {
        for e in &synced.report.events {
            println!("{e}");
        }
    }
    for line in synced.lines() {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced() -> Synced {
        Synced {
            report: SyncReport {
                repo: "lab/mamba".into(),
                imported: 2,
                pushed: 1,
                requests: 7,
                ..Default::default()
            },
            remote: SyncRemoteReport::default(),
            summary: SyncSummary::default(),
        }
    }

    #[test]
    fn the_status_line_is_the_last_line_sync_prints() {
        let mut s = synced();
        assert_eq!(
            s.status_line(),
            "synced with lab/mamba: 2 imported, 1 updated on GitHub (7 requests)"
        );
        s.remote.waiting = 2;
        s.summary.conflicts = 1;
        assert_eq!(s.lines().len(), 3);
        assert!(
            s.status_line()
                .starts_with("1 conflict(s): see `labbook conflicts`"),
            "{}",
            s.status_line()
        );
        s.report = SyncReport::default();
        s.summary.conflicts = 0;
        assert_eq!(s.status_line(), "2 remote run(s) still waiting for results");
    }
}
