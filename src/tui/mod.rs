//! The full-screen TUI (`labbook` with no subcommand on a terminal).
//!
//! Elm-style: terminal events and worker replies become one `Action` enum, the pure
//! `state::update` turns each into state changes and `Effect`s, `views::render` draws the
//! state without side effects, and this run loop performs the effects. Database work runs
//! on the `worker` thread; sync and starting runs run as `jobs` on threads of their own.
pub mod action;
pub mod bench;
pub mod form;
mod jobs;
pub mod keymap;
pub mod markdown;
pub mod state;
pub mod tab;
pub mod terminal;
pub mod theme;
pub mod views;
pub mod worker;

#[cfg(test)]
mod snapshots;
#[cfg(test)]
mod state_tests;

use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use crossterm::event::{self, Event, KeyEventKind, MouseButton, MouseEventKind};
use labbook::Store;
use labbook::config::{self, AppConfig};

use crate::cli::Env;
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

pub fn run(env: &Env) -> Result<()> {
    let label = env
        .db_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut app = app_from_config(&env.config, label)?;
    // Open before taking over the screen so a bad file is a plain one-line error.
    let store = Store::open(&env.db_path, config::author(&env.config))?;
    // What the jobs (sync, detached runs) run the CLI's code with; never JSON.
    let job_env = Arc::new(Env {
        db_path: env.db_path.clone(),
        config: env.config.clone(),
        json: false,
        config_path: env.config_path.clone(),
    });
    let (req_tx, req_rx) = mpsc::channel();
    let (rep_tx, rep_rx) = mpsc::channel();
    // The jobs answer on the worker's channel, from their own threads.
    let job_tx = rep_tx.clone();
    let mut launches = Vec::new();
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
                            launches.retain(|h: &std::thread::JoinHandle<()>| !h.is_finished());
                            launches.extend(jobs::launch_run(&job_env, args, &job_tx));
                        }
                        Effect::Sync => jobs::sync(&job_env, &job_tx),
                        Effect::ListConfigs => jobs::list_configs(&job_env, &job_tx),
                        Effect::RunFromSnapshot {
                            run,
                            name,
                            config,
                            experiment,
                            edit,
                        } => {
                            let sub = if edit { "edited" } else { "rerun" };
                            let path = labbook::recorder::run_dir(&job_env.db_path, run)
                                .join(sub)
                                .join(format!("{name}.toml"));
                            // The editor needs the terminal; a plain re-run writes its
                            // copy on the job's thread.
                            let to_write = if edit {
                                tui.suspend()?;
                                let edited = jobs::write_config(&path, &config)
                                    .and_then(|()| crate::cli::edit::edit_file(&path));
                                tui.resume()?;
                                if let Err(e) = edited {
                                    queue.extend(state::update(
                                        &mut app,
                                        Action::Worker(Reply::Failed(e)),
                                    ));
                                    continue;
                                }
                                None
                            } else {
                                Some(config)
                            };
                            launches.retain(|h: &std::thread::JoinHandle<()>| !h.is_finished());
                            launches.extend(jobs::launch_config_copy(
                                &job_env,
                                (path, to_write),
                                experiment,
                                &job_tx,
                            ));
                        }
                        Effect::LaunchRemote(args) => {
                            launches.retain(|h: &std::thread::JoinHandle<()>| !h.is_finished());
                            launches.extend(jobs::launch_remote(&job_env, args, &job_tx));
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
    for launch in launches {
        let _ = launch.join();
    }
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
