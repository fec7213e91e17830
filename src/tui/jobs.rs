//! Work the TUI starts that is neither drawing nor database work: syncing with GitHub
//! (network, seconds) and starting a detached run (validation, a new process). Each job
//! runs the CLI's own code on a thread of its own, so the UI never waits on it, and
//! answers with a typed `Reply`. What a job writes to the notebook reaches the screen
//! through the database worker's `data_version` poll.
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use super::worker::Reply;
use crate::cli::{Env, run, sync};

/// `labbook sync`, in this process. Quitting may cut it short: a sync resumes where it
/// stopped, so nobody waits for the network.
pub fn sync(env: &Arc<Env>, tx: &Sender<Reply>) {
    spawn("labbook-sync", "sync", env, tx, |env| {
        match sync::sync(env) {
            Ok(synced) => Reply::Synced(Arc::new(synced)),
            // `labbook sync` said why on its last line, which is what the status bar showed.
            Err(e) => Reply::Failed(format!("sync: {}", last_line(&error_text(&e)))),
        }
    });
}

/// `labbook run ARGS... --detach`, in this process; the run itself trains in a worker
/// process of its own, so it outlives the TUI. The caller joins the thread before the
/// process exits: stopping between recording the run and starting its worker would leave
/// it queued with nothing to train it.
pub fn launch_run(env: &Arc<Env>, args: Vec<String>, tx: &Sender<Reply>) -> Option<JoinHandle<()>> {
    spawn("labbook-launch", "run", env, tx, move |env| {
        // A warning printed here would land on the TUI's screen; the log keeps it.
        let mut warn = |w: &str| tracing::warn!("run: {w}");
        match run::start_detached_from(env, &args, &mut warn) {
            Ok(run::Detached::Run { run, .. }) => Reply::RunStarted(run),
            Ok(run::Detached::Sweep { sweep, runs, .. }) => Reply::SweepStarted {
                sweep,
                runs: runs.into_iter().map(|(r, _)| r).collect(),
            },
            Err(e) => Reply::Failed(first_line(&error_text(&e))),
        }
    })
}

/// Runs `job` on a new thread named `name` and sends its reply. A panic becomes a failed
/// reply rather than the end of the TUI: the job ran in a child process before.
fn spawn(
    name: &str,
    what: &'static str,
    env: &Arc<Env>,
    tx: &Sender<Reply>,
    job: impl FnOnce(&Env) -> Reply + Send + 'static,
) -> Option<JoinHandle<()>> {
    let env = Arc::clone(env);
    let reply_tx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            super::terminal::contain_panics();
            let reply =
                std::panic::catch_unwind(AssertUnwindSafe(|| job(&env))).unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Reply::Failed(format!("{what}: internal error: {msg} (see the log)"))
                });
            let _ = reply_tx.send(reply);
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            let _ = tx.send(Reply::Failed(format!("{what}: cannot start a thread: {e}")));
            None
        }
    }
}

/// The error as `labbook` prints it after `error: `: the causes joined by `: `, with no
/// control characters.
fn error_text(e: &anyhow::Error) -> String {
    labbook::sanitize::for_terminal(&format!("{e:#}")).into_owned()
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("labbook run failed");
    line.trim_start_matches("error: ").to_string()
}

fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed");
    line.trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_the_cli_printed_them() {
        let e = anyhow::anyhow!("inner \x1b[2J").context("outer");
        assert_eq!(error_text(&e), "outer: inner \u{fffd}[2J");
        assert_eq!(
            first_line("error: unexpected argument '--x' found\nmore"),
            "unexpected argument '--x' found"
        );
        assert_eq!(last_line("first\nlast\n\n"), "last");
        assert_eq!(last_line(""), "failed");
    }
}
