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
        started(run::start_detached_from(env, &args, &mut warn))
    })
}

/// Writes a run's config snapshot to `path` (its folder created).
pub fn write_config(path: &std::path::Path, config: &str) -> Result<(), String> {
    path.parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, config))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A run from a copy of another run's config (`r`, `c` on the Runs tab): `path`, written
/// first from the given text when there is one, then started like [`launch_run`], under
/// `experiment`.
pub fn launch_config_copy(
    env: &Arc<Env>,
    (path, text): (std::path::PathBuf, Option<String>),
    experiment: Option<labbook::model::ItemId>,
    tx: &Sender<Reply>,
) -> Option<JoinHandle<()>> {
    spawn("labbook-launch", "run", env, tx, move |env| {
        if let Some(text) = text
            && let Err(e) = write_config(&path, &text)
        {
            return Reply::Failed(e);
        }
        let mut args = vec![path.display().to_string()];
        if let Some(e) = experiment {
            args.extend(["-e".to_string(), e.to_string()]);
        }
        let mut warn = |w: &str| tracing::warn!("run: {w}");
        started(run::start_detached_from(env, &args, &mut warn))
    })
}

/// What a start of detached runs tells the TUI.
fn started(result: anyhow::Result<run::Detached>) -> Reply {
    match result {
        Ok(run::Detached::Run { run, .. }) => Reply::RunStarted(run),
        Ok(run::Detached::Sweep { sweep, runs, .. }) => Reply::SweepStarted {
            sweep,
            runs: runs.into_iter().map(|(r, _)| r).collect(),
        },
        Err(e) => Reply::Failed(first_line(&error_text(&e))),
    }
}

/// `labbook run ARGS... --remote`, in this process: files the request(s) on GitHub. What
/// `run --remote` would refuse (an unpushed commit, a dirty tree) comes back as the reason.
pub fn launch_remote(
    env: &Arc<Env>,
    args: Vec<String>,
    tx: &Sender<Reply>,
) -> Option<JoinHandle<()>> {
    spawn("labbook-remote", "run --remote", env, tx, move |env| {
        let mut warn = |w: &str| tracing::warn!("run --remote: {w}");
        match run::remote_from(env, &args, &mut warn) {
            Ok(filed) => Reply::RemoteFiled(filed),
            Err(e) => Reply::Failed(first_line(&error_text(&e))),
        }
    })
}

/// The run picker's configs: `configs/**/*.toml` beside the notebook, the ones its recent
/// runs used first (most recent first), then the rest by path.
pub fn list_configs(env: &Arc<Env>, tx: &Sender<Reply>) {
    spawn("labbook-configs", "configs", env, tx, |env| {
        let root = env
            .db_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| std::path::PathBuf::from("."));
        let mut files = Vec::new();
        let mut dirs = vec![root.join("configs")];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|x| x == "toml")
                    && path.file_name().is_some_and(|n| n != "labbook.toml")
                {
                    files.push(path);
                }
            }
        }
        let recent: Vec<String> = env
            .open()
            .ok()
            .and_then(|store| store.list_runs(&Default::default()).ok())
            .map(|mut runs| {
                runs.sort_by(|a, b| b.created_at.cmp(&a.created_at));
                runs.into_iter().filter_map(|r| r.config_path).collect()
            })
            .unwrap_or_default();
        let mut configs: Vec<(Option<usize>, crate::tui::state::ConfigFile)> = files
            .into_iter()
            .map(|abs| {
                let path = abs
                    .strip_prefix(&root)
                    .unwrap_or(&abs)
                    .display()
                    .to_string();
                let rank = recent
                    .iter()
                    .position(|r| std::path::Path::new(r).ends_with(&path) || abs.ends_with(r));
                let text = std::fs::read_to_string(&abs).unwrap_or_default();
                (
                    rank,
                    crate::tui::state::ConfigFile {
                        path,
                        abs,
                        text,
                        recent: rank.is_some(),
                    },
                )
            })
            .collect();
        configs.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.path.cmp(&b.1.path),
        });
        Reply::Configs(configs.into_iter().map(|(_, c)| c).collect())
    });
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
