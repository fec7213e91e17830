//! The full-screen TUI (`labbook` with no subcommand on a terminal).
//!
//! Elm-style (one state, one `update`; no per-component state): terminal events and worker replies become `Action`s, the
//! pure `state::update` turns them into state changes and `Effect`s, `views::render`
//! draws the state, and this run loop performs the effects. Database work runs on the
//! `worker` thread.
pub mod action;
pub mod bench;
pub mod form;
pub mod keymap;
pub mod markdown;
pub mod state;
pub mod terminal;
pub mod theme;
pub mod views;
pub mod worker;

#[cfg(test)]
mod snapshots;
#[cfg(test)]
mod state_tests;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use crossterm::event::{self, Event, KeyEventKind, MouseButton, MouseEventKind};
use labbook::Store;
use labbook::config::AppConfig;

use action::{Action, Effect};
use state::App;
use worker::{Reply, Request};

/// How long the loop waits for input before checking the worker again.
const TICK: Duration = Duration::from_millis(30);

/// Builds the app state from the config (keys, theme, `NO_COLOR`).
pub fn app_from_config(config: &AppConfig, db_label: String) -> Result<App> {
    let keymap = keymap::Keymap::from_config(config.keys.as_ref()).map_err(|e| anyhow!(e))?;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let theme =
        theme::Theme::from_config(config.theme.as_ref(), no_color).map_err(|e| anyhow!(e))?;
    Ok(App::new(db_label, keymap, theme))
}

pub fn run(db_path: &Path, config: &AppConfig, author: String) -> Result<()> {
    let label = db_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut app = app_from_config(config, label)?;
    // Open before taking over the screen so a bad file is a plain one-line error.
    let store = Store::open(db_path, author)?;
    let (req_tx, req_rx) = mpsc::channel();
    let (rep_tx, rep_rx) = mpsc::channel();
    // Replies of child `labbook` processes (sync, detached runs), sent from their threads.
    let child_tx = rep_tx.clone();
    let worker = std::thread::Builder::new()
        .name("labbook-db".into())
        .spawn(move || worker::run(store, req_rx, rep_tx))
        .context("cannot start the database thread")?;
    let _ = req_tx.send(Request::LoadAll);

    let result = (|| -> Result<()> {
        let mut tui = terminal::Tui::enter().context("cannot set up the terminal")?;
        let size = tui.terminal.size()?;
        state::update(&mut app, Action::Resize(size.width, size.height));
        let mut dirty = true;
        loop {
            if dirty {
                tui.terminal.draw(|f| views::render(f, &app))?;
                dirty = false;
            }
            let mut actions = Vec::new();
            if event::poll(TICK)? {
                // Drain what is queued so fast typing costs one frame.
                loop {
                    if let Some(a) = to_action(&app, event::read()?) {
                        actions.push(a);
                    }
                    if !event::poll(Duration::ZERO)? {
                        break;
                    }
                }
            }
            actions.extend(rep_rx.try_iter().map(Action::Worker));
            for a in actions {
                dirty = true;
                let mut queue = std::collections::VecDeque::from(state::update(&mut app, a));
                while let Some(fx) = queue.pop_front() {
                    match fx {
                        Effect::Quit => return Ok(()),
                        Effect::Send(r) => {
                            if req_tx.send(r).is_err() {
                                return Err(anyhow!("the database thread stopped"));
                            }
                        }
                        Effect::EditInEditor(id) => {
                            let item = app
                                .detail
                                .as_ref()
                                .map(|(i, _)| i)
                                .filter(|i| i.id == id)
                                .or_else(|| app.find_item(id))
                                .cloned();
                            let Some(item) = item else { continue };
                            tui.suspend()?;
                            let edited = crate::cli::edit::edit_in_editor(&item);
                            tui.resume()?;
                            let reply = match edited {
                                Ok(patch) => {
                                    let _ = req_tx.send(Request::Update(id, patch));
                                    Reply::Done {
                                        msg: format!("saving {id}…"),
                                        select: None,
                                    }
                                }
                                Err(e) => Reply::Failed(format!("{e:#}")),
                            };
                            queue.extend(state::update(&mut app, Action::Worker(reply)));
                        }
                        Effect::LaunchRun(args) => {
                            // Starting a process and validating the config: not on the UI thread.
                            let tx = child_tx.clone();
                            let db = db_path.to_path_buf();
                            std::thread::spawn(move || {
                                let _ = tx.send(launch_run(&db, &args));
                            });
                        }
                        Effect::Sync => {
                            // Sync talks to the network: never on the UI thread. Its writes
                            // reach the screen through the worker's data_version poll.
                            let tx = child_tx.clone();
                            let db = db_path.to_path_buf();
                            std::thread::spawn(move || {
                                let _ = tx.send(run_sync(&db));
                            });
                        }
                        Effect::OpenUrl(url) => {
                            let opener = if cfg!(target_os = "macos") {
                                "open"
                            } else {
                                "xdg-open"
                            };
                            let spawned = std::process::Command::new(opener)
                                .arg(&url)
                                .stdin(std::process::Stdio::null())
                                .stdout(std::process::Stdio::null())
                                .stderr(std::process::Stdio::null())
                                .spawn();
                            if let Err(e) = spawned {
                                queue.extend(state::update(
                                    &mut app,
                                    Action::Worker(Reply::Failed(format!(
                                        "cannot run {opener}: {e}"
                                    ))),
                                ));
                            }
                        }
                        Effect::Copy(text) => tui.copy(&text)?,
                    }
                }
            }
        }
    })();
    let _ = req_tx.send(Request::Shutdown);
    drop(req_tx);
    let _ = worker.join();
    result
}

/// Terminal event → action (key presses through the keymap of the current mode).
fn to_action(app: &App, ev: Event) -> Option<Action> {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => app.action_for_key(&k),
        Event::Mouse(m) => match m.kind {
            MouseEventKind::Down(MouseButton::Left) => Some(Action::Click {
                col: m.column,
                row: m.row,
            }),
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => Some(Action::ScrollAt {
                col: m.column,
                row: m.row,
                down: m.kind == MouseEventKind::ScrollDown,
            }),
            _ => None,
        },
        Event::Resize(w, h) => Some(Action::Resize(w, h)),
        _ => None,
    }
}

/// `labbook --db DB ARGS...` as a child process with no stdin, and its output; the TUI
/// runs slow or process-owning commands this way rather than on its own threads.
fn labbook_child(db_path: &Path, args: &[&str]) -> Result<std::process::Output, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the labbook executable: {e}"))?;
    std::process::Command::new(exe)
        .arg("--db")
        .arg(db_path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run labbook {}: {e}", args.first().unwrap_or(&"")))
}

/// `labbook sync` as a child process; its last output line becomes the status message.
fn run_sync(db_path: &Path) -> Reply {
    let last = |bytes: &[u8], fallback: &str| {
        String::from_utf8_lossy(bytes)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or(fallback)
            .trim_start_matches("error: ")
            .to_string()
    };
    match labbook_child(db_path, &["sync"]) {
        Ok(o) if o.status.success() => Reply::Done {
            msg: last(&o.stdout, "sync done"),
            select: None,
        },
        Ok(o) => Reply::Failed(format!("sync: {}", last(&o.stderr, "failed"))),
        Err(e) => Reply::Failed(e),
    }
}

/// Starts a detached run through the CLI (`labbook --db DB run ARGS... --detach`), which
/// validates everything first and puts the worker in its own process group.
fn launch_run(db_path: &Path, args: &[String]) -> Reply {
    let mut argv: Vec<&str> = vec!["run"];
    argv.extend(args.iter().map(String::as_str));
    argv.push("--detach");
    match labbook_child(db_path, &argv) {
        Ok(o) if o.status.success() => {
            let run = String::from_utf8_lossy(&o.stdout).trim().to_string();
            Reply::Done {
                msg: format!("{run} started in the background (d stops it)"),
                select: None,
            }
        }
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            Reply::Failed(
                err.lines()
                    .next()
                    .unwrap_or("labbook run failed")
                    .trim_start_matches("error: ")
                    .to_string(),
            )
        }
        Err(e) => Reply::Failed(e),
    }
}
