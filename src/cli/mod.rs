//! Command-line interface: one module per subcommand, each an `Args` struct and a `cmd_*` fn.
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use labbook::Store;
use labbook::config::{self, AppConfig};

/// Every line the CLI prints goes through `output::print_clean` (these shadow std's
/// macros in `cli/`): control characters in the notebook's text (typed in, or imported
/// from elsewhere) never reach the terminal raw, and a closed stdout ends the program
/// quietly.
macro_rules! println {
    () => {
        $crate::cli::output::print_clean(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::print_clean(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::cli::output::print_clean(format_args!($($arg)*))
    };
}

mod add;
mod backup;
mod bench;
mod cancel;
mod comment;
mod conflicts;
pub(crate) mod edit;
mod export;
mod export_model;
mod import;
mod init;
mod link;
mod list;
mod output;
mod plot;
mod pull_model;
mod rm;
pub(crate) mod run;
mod runner;
mod runs;
mod sample;
mod search;
mod show;
mod status;
pub(crate) mod sync;
mod tag;

/// A terminal-first lab notebook and experiment tracker.
///
/// With no command, opens the full-screen TUI (or, when stdout is not a terminal, prints
/// the notebook's status). The notebook is `tracker.db`, found in the
/// current directory or its parents (like git finds `.git`) and created on first use.
#[derive(Parser)]
#[command(name = "labbook", version, max_term_width = 100)]
pub struct Cli {
    /// Notebook file to use instead of the discovered `tracker.db`.
    #[arg(long, global = true, env = "LABBOOK_DB", value_name = "PATH")]
    db: Option<PathBuf>,
    /// App config to use instead of `configs/labbook.toml` beside the notebook.
    #[arg(long, global = true, env = "LABBOOK_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Command {
    /// Create a notebook (optionally seeded with an example Mamba project).
    Init(init::Args),
    /// Add a task, paper, idea or experiment.
    Add(add::Args),
    /// List items, filtered by kind, status, tag or link.
    #[command(alias = "ls")]
    List(list::Args),
    /// Show one item (T-1, P-2, I-3, E-4) or run in full.
    Show(show::Args),
    /// Edit an item with flags, or in $EDITOR when no flag is given.
    Edit(edit::Args),
    /// Link two items (both ends see the link).
    Link(link::LinkArgs),
    /// Remove links between two items.
    Unlink(link::UnlinkArgs),
    /// Add or remove tags.
    Tag(tag::Args),
    /// Comment on an item.
    Comment(comment::Args),
    /// Full-text search over titles, bodies, comments, authors and tags.
    Search(search::Args),
    /// Archive an item (or delete it with --purge).
    Rm(rm::Args),
    /// Import papers from a BibTeX file.
    Import(import::Args),
    /// Export the notebook as Markdown, JSON or BibTeX, or runs' curves as CSV or JSON.
    Export(export::Args),
    /// Copy the notebook to a new file with SQLite's online backup.
    Backup(backup::Args),
    /// Train a model from a run config and record the run (R-n) in the notebook.
    Run(run::Args),
    /// List training runs with status, progress and final metrics.
    Runs(runs::Args),
    /// Generate from a run's weights: continue a prompt, streaming tokens as they come.
    Sample(sample::Args),
    /// Write a run's weights as safetensors with PyTorch (mambapy) names, for PyTorch or
    /// `train.init_from`.
    ExportModel(export_model::Args),
    /// Download a remote run's weights and full-resolution curves (the runner's release
    /// asset) into runs/R-n/.
    PullModel(pull_model::Args),
    /// Stop running runs gracefully (final checkpoint, then cancelled); cancel queued ones.
    Cancel(cancel::Args),
    /// Compare runs: the config keys that differ, final and best metrics.
    Compare(runs::CompareArgs),
    /// Draw metric curves of runs into a PNG or SVG.
    Plot(plot::Args),
    /// Write a Markdown report of an experiment with PNG plots of its runs.
    Report(plot::ReportArgs),
    #[command(hide = true)]
    RunWorker(run::WorkerArgs),
    #[command(hide = true)]
    SweepWorker(run::SweepWorkerArgs),
    /// Print a short status of the notebook (what `labbook` prints when not on a terminal).
    Status,
    /// Measure labbook's speed (see docs/performance.md).
    Bench(bench::Args),
    /// Two-way sync with the GitHub repo in `[github]` (see docs/github.md); also brings
    /// back the results of remote runs.
    Sync(sync::Args),
    /// Run requests filed with `run --remote` on this machine (see docs/remote-runs.md).
    Runner(runner::Args),
    /// List fields changed both here and on GitHub since the last sync.
    Conflicts(conflicts::ConflictsArgs),
    /// Settle a sync conflict: keep yours, take GitHub's, or edit the value.
    Resolve(conflicts::ResolveArgs),
}

/// The notebook this command created, if it did: said once on stderr when the command
/// succeeds (a typo'd directory otherwise grows a notebook silently).
static CREATED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Set by a command that reports the creation itself (`init`).
static ANNOUNCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The running command says itself that it created the notebook.
pub(crate) fn announced_creation() {
    ANNOUNCED.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn say_if_created() {
    if ANNOUNCED.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    if let Some(path) = CREATED.get() {
        let shown = std::env::current_dir()
            .ok()
            .and_then(|cwd| path.strip_prefix(cwd).ok().map(|p| Path::new(".").join(p)))
            .unwrap_or_else(|| path.clone());
        eprintln!("created {}", shown.display());
    }
}

/// What every command gets: where the notebook is and who is working.
pub struct Env {
    pub db_path: PathBuf,
    pub config: AppConfig,
    pub json: bool,
    /// The app config given with `--config`/`LABBOOK_CONFIG`, passed on to run workers.
    pub config_path: Option<PathBuf>,
}

impl Env {
    /// Opens the notebook and marks runs whose worker died as crashed.
    pub fn open(&self) -> Result<Store> {
        let existed = self.db_path.exists();
        let mut store = Store::open(&self.db_path, config::author(&self.config))?;
        if !existed {
            let _ = CREATED.set(self.db_path.clone());
        }
        if let Err(e) = store.reap_crashed() {
            // A read-only notebook cannot be updated; the runs stay as they are.
            tracing::debug!(error = %e, "cannot reap crashed runs");
        }
        Ok(store)
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // Keep usage errors to one line too (`--help` has the details), but the whole
            // message: clap puts what is missing or allowed on the lines after the first.
            let text = e.to_string();
            let _ = writeln!(std::io::stderr(), "{}", usage_error_line(&text));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => {
            say_if_created();
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line, naming the problem; the chain adds context such as the file.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS; // the reader went away (`| head`): nothing to say
            }
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            let msg = labbook::sanitize::for_terminal(&msg);
            let _ = writeln!(std::io::stderr(), "error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// clap's error as one line: its first paragraph (before `Usage:`), lines joined.
fn usage_error_line(text: &str) -> String {
    let line = text
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        "error: invalid arguments; see --help".to_string()
    } else {
        line
    }
}

fn run(cli: Cli) -> Result<()> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let db_path = config::discover_db(cli.db.as_deref(), &cwd);
    let config_path = config::discover_config(cli.config.as_deref(), &db_path);
    if cli.config.is_some() && !config_path.is_file() {
        // A config named on purpose must be there: a typo would otherwise silently run
        // with the defaults (no [github], no [runner]).
        anyhow::bail!(
            "config file {} does not exist (given with --config or LABBOOK_CONFIG)",
            config_path.display()
        );
    }
    let config = AppConfig::load(&config_path)?;
    init_logging();
    let env = Env {
        db_path,
        config,
        json: cli.json,
        config_path: cli.config.clone(),
    };
    tracing::info!(command = ?std::env::args().nth(1), "start");
    match cli.command {
        None if !env.json && std::io::stdout().is_terminal() && std::io::stdin().is_terminal() => {
            crate::tui::run(&env)
        }
        None | Some(Command::Status) => status::cmd_status(&env),
        Some(Command::Init(a)) => init::cmd_init(&env, a),
        Some(Command::Add(a)) => add::cmd_add(&env, a),
        Some(Command::List(a)) => list::cmd_list(&env, a),
        Some(Command::Show(a)) => show::cmd_show(&env, a),
        Some(Command::Edit(a)) => edit::cmd_edit(&env, a),
        Some(Command::Link(a)) => link::cmd_link(&env, a),
        Some(Command::Unlink(a)) => link::cmd_unlink(&env, a),
        Some(Command::Tag(a)) => tag::cmd_tag(&env, a),
        Some(Command::Comment(a)) => comment::cmd_comment(&env, a),
        Some(Command::Search(a)) => search::cmd_search(&env, a),
        Some(Command::Rm(a)) => rm::cmd_rm(&env, a),
        Some(Command::Import(a)) => import::cmd_import(&env, a),
        Some(Command::Export(a)) => export::cmd_export(&env, a),
        Some(Command::Backup(a)) => backup::cmd_backup(&env, a),
        Some(Command::Run(a)) => run::cmd_run(&env, a),
        Some(Command::Bench(a)) => bench::cmd_bench(&env, a),
        Some(Command::Sync(a)) => sync::cmd_sync(&env, a),
        Some(Command::Runner(a)) => runner::cmd_runner(&env, a),
        Some(Command::Conflicts(a)) => conflicts::cmd_conflicts(&env, a),
        Some(Command::Resolve(a)) => conflicts::cmd_resolve(&env, a),
        Some(Command::Runs(a)) => runs::cmd_runs(&env, a),
        Some(Command::Sample(a)) => sample::cmd_sample(&env, a),
        Some(Command::ExportModel(a)) => export_model::cmd_export_model(&env, a),
        Some(Command::PullModel(a)) => pull_model::cmd_pull_model(&env, a),
        Some(Command::Cancel(a)) => cancel::cmd_cancel(&env, a),
        Some(Command::Compare(a)) => runs::cmd_compare(&env, a),
        Some(Command::Plot(a)) => plot::cmd_plot(&env, a),
        Some(Command::Report(a)) => plot::cmd_report(&env, a),
        Some(Command::RunWorker(a)) => run::cmd_worker(&env, a),
        Some(Command::SweepWorker(a)) => run::cmd_sweep_worker(&env, a),
    }
}

/// Logs go to a file (never the terminal, which the TUI owns): `LABBOOK_LOG_FILE`, or
/// `labbook.log` in the user's state directory. Level from `LABBOOK_LOG` (default `info`).
fn init_logging() {
    let path = std::env::var_os("LABBOOK_LOG_FILE")
        .map(PathBuf::from)
        .or_else(|| {
            let base = std::env::var_os("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state"))
                })?;
            Some(base.join("labbook").join("labbook.log"))
        });
    let Some(path) = path else { return };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LABBOOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}
