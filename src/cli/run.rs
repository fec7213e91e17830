use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressStyle};
use labbook::model::ItemId;
use labbook::recorder::{self, Progress, Provenance};
use labbook::store::RunStatus;
use labbook_models::config::RunConfig;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Run config (TOML), e.g. configs/selective-copying-mamba.toml.
    #[arg(value_name = "CONFIG")]
    config_file: PathBuf,
    /// Override a config value, e.g. `--set train.lr=3e-4` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
    /// Record the run under this experiment.
    #[arg(long, short = 'e', value_name = "E-n")]
    experiment: Option<ItemId>,
}

/// The parsed config with `--set` overrides applied; every error names the file or key.
pub fn load_config(path: &std::path::Path, sets: &[String]) -> Result<RunConfig> {
    let mut cfg = RunConfig::from_file(path)?;
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("`--set {s}`: expected SECTION.KEY=VALUE"))?;
        cfg.set(k.trim(), v.trim())?;
    }
    Ok(cfg)
}

struct Bar {
    bar: ProgressBar,
}

impl Progress for Bar {
    fn step(&mut self, step: u64, total: u64, metrics: &[(String, f64)]) {
        self.bar.set_length(total);
        self.bar.set_position(step);
        let get = |k: &str| metrics.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let mut msg = String::new();
        if let Some(l) = get("loss") {
            msg.push_str(&format!("loss {l:.4}"));
        }
        if let Some(a) = get("accuracy") {
            msg.push_str(&format!("  acc {:.1}%", a * 100.0));
        }
        if let Some(t) = get("tokens_per_s") {
            msg.push_str(&format!("  {t:.0} tok/s"));
        }
        self.bar.set_message(msg);
    }

    fn eval(&mut self, step: u64, metrics: &[(String, f64)]) {
        let line = metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join("  ");
        self.bar.println(format!("eval @ {step}: {line}"));
    }
}

pub fn cmd_run(env: &Env, a: Args) -> Result<()> {
    // Everything that can be wrong with the request is checked before any row is written.
    let cfg = load_config(&a.config_file, &a.sets)?;
    cfg.train.backend.check_available()?;
    let mut store = env.open()?;
    if let Some(e) = a.experiment {
        store.require(e)?;
    }
    let workdir = std::env::current_dir()?;
    let provenance = Provenance::capture(&workdir);
    let run = recorder::create_run(
        &mut store,
        &cfg,
        Some(&a.config_file),
        a.experiment,
        &provenance,
    )?;
    let runs_dir = env
        .db_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("runs")
        .join(run.to_string());

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // A second Ctrl-C is left to the default handler's job: the flag is already set.
        let _ = ctrlc::set_handler(move || cancel.store(true, Ordering::SeqCst));
    }
    let bar = if env.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(cfg.train.steps)
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(run.to_string());
    if !env.json {
        eprintln!(
            "{run}: training {} (d_model {}) on {:?}, {} steps, backend {}",
            cfg.layer_pattern(),
            cfg.model.d_model,
            cfg.task.kind,
            cfg.train.steps,
            cfg.train.backend
        );
    }
    let mut progress = Bar { bar };
    let outcome = recorder::train_run(&mut store, run, &cfg, &runs_dir, &cancel, &mut progress)?;
    progress.bar.finish_and_clear();
    if env.json {
        super::output::json(&outcome)?;
    } else {
        println!(
            "{run} {} after {} steps in {:.1}s",
            outcome.status, outcome.steps, outcome.wall_time_s
        );
        for (k, v) in &outcome.final_metrics {
            println!("  {k:<24} {v:.4}");
        }
    }
    match outcome.status {
        RunStatus::Failed => anyhow::bail!("{run} failed: {}", outcome.error.unwrap_or_default()),
        RunStatus::Cancelled => {
            anyhow::bail!("{run} cancelled (checkpoint in {})", runs_dir.display())
        }
        _ => Ok(()),
    }
}
