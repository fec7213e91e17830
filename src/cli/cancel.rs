use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::lifecycle::signal_stop;
use labbook::model::RunId;
use labbook::store::{RunStatus, pid_alive};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Runs to stop (R-n ...).
    #[arg(required = true, value_name = "R-n")]
    runs: Vec<RunId>,
    /// Wait until the runs have stopped (at most --timeout seconds).
    #[arg(long)]
    wait: bool,
    /// Seconds --wait waits before giving up.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    timeout: u64,
}

pub fn cmd_cancel(env: &Env, a: Args) -> Result<()> {
    let mut store = env.open()?;
    let host = labbook::recorder::hostname();
    let mut waiting = Vec::new();
    let mut report = Vec::new();
    for &id in &a.runs {
        let run = store.get_run(id)?;
        match run.status {
            RunStatus::Queued | RunStatus::QueuedRemote => {
                if store.cancel_queued(id)? {
                    // Local runs have no remote record.
                    let remote = labbook::remote::request::remote_ref(&store, id);
                    let what = match remote {
                        Some(r) => close_remote_request(env, &store, id, &r),
                        None => "cancelled (it had not started)".to_string(),
                    };
                    report.push((id, what));
                } else {
                    // It started in the meantime: stop it like a running run.
                    waiting.push(id);
                    let r = store.get_run(id)?;
                    if let Some(pid) = r.pid {
                        signal_stop(pid)?;
                    }
                    report.push((id, "stop requested".to_string()));
                }
            }
            RunStatus::Running => {
                let pid = run
                    .pid
                    .ok_or_else(|| anyhow::anyhow!("{id} is running but has no worker pid"))?;
                if run.host.is_some() && run.host != host {
                    anyhow::bail!(
                        "{id} runs on host {}; cancel it there",
                        run.host.unwrap_or_default()
                    );
                }
                if !pid_alive(pid) {
                    anyhow::bail!("{id}'s worker (pid {pid}) is gone; it will be marked crashed");
                }
                signal_stop(pid)
                    .map_err(|e| anyhow::anyhow!("{id}: cannot signal pid {pid}: {e}"))?;
                waiting.push(id);
                report.push((
                    id,
                    format!("stop requested (pid {pid}: final checkpoint, then cancelled)"),
                ));
            }
            done => anyhow::bail!("{id} has already ended ({done})"),
        }
    }
    if a.wait {
        let deadline = Instant::now() + Duration::from_secs(a.timeout);
        for &id in &waiting {
            loop {
                let _ = store.reap_crashed();
                let r = store.get_run(id)?;
                if r.status.is_finished() {
                    if let Some(e) = report.iter_mut().find(|(r, _)| *r == id) {
                        e.1 = r.status.to_string();
                    }
                    break;
                }
                if Instant::now() > deadline {
                    anyhow::bail!("{id} has not stopped after {}s", a.timeout);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    if env.json {
        return super::output::json(
            &report
                .iter()
                .map(|(id, what)| serde_json::json!({ "run": id, "result": what }))
                .collect::<Vec<_>>(),
        );
    }
    for (id, what) in report {
        println!("{id}: {what}");
    }
    Ok(())
}

/// Closes the GitHub request of a remote run cancelled here, so no runner picks it up and
/// one already running it stops; says what to do by hand when that is not possible.
fn close_remote_request(
    env: &Env,
    store: &labbook::Store,
    id: RunId,
    r: &labbook::remote::request::RemoteRef,
) -> String {
    let by_hand = |why: String| match r.issue {
        Some(n) => format!(
            "cancelled here; close the request {}#{n} on GitHub so no runner picks it up ({why})",
            r.repo
        ),
        None => format!("cancelled here ({why})"),
    };
    let Some(gh) = env.config.github.clone() else {
        return by_hand("no [github] section in the config".into());
    };
    let token = match labbook::github::Token::discover() {
        Ok(t) => t,
        Err(e) => return by_hand(e.to_string()),
    };
    match labbook::remote::request::cancel_request(&gh, &token, r, id, store.author()) {
        Ok(n) => format!("cancelled; closed its request {}#{n} on GitHub", r.repo),
        Err(e) => by_hand(e.to_string()),
    }
}
