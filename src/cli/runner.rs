//! `labbook runner`: runs the remote run requests of a repo on this machine.
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use labbook::config::{GithubConfig, parse_duration};
use labbook::github::Token;
use labbook::remote::{RunnerOptions, run_runner};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// The repo whose `run-request` issues to run (default: `[github] repo`).
    #[arg(long, value_name = "OWNER/NAME")]
    repo: Option<String>,
    /// Where checkouts, builds and job notebooks go.
    #[arg(long, value_name = "DIR")]
    workdir: PathBuf,
    /// The backend this machine offers: `cuda` takes CUDA and CPU requests, `cpu` only CPU.
    #[arg(long, default_value = "cpu", value_name = "BACKEND")]
    backend: String,
    /// The GPUs this runner hands out, e.g. `0,1,2,3`: each CUDA job gets the number it
    /// asks for (`run --remote --gpus N`, default 1) as `CUDA_VISIBLE_DEVICES`, its config's
    /// devices renumbered to match, and waits while they are busy.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    gpus: Vec<usize>,
    /// At most this many runs at once (default: the number of `--gpus`, else 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    parallel: Option<u32>,
    /// How often to look for new requests, e.g. `60s`, `5m`.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    poll: String,
    /// Run what is there now, then exit.
    #[arg(long)]
    once: bool,
    /// Where training runs: `local` or `slurm` (default: `[runner] executor`, else local).
    #[arg(long, value_name = "EXECUTOR", value_parser = ["local", "slurm"])]
    executor: Option<String>,
    /// Print the job script the Slurm executor would submit for the next request, and exit
    /// (claims nothing).
    #[arg(long, requires = "executor")]
    dry_run: bool,
}

pub fn cmd_runner(env: &Env, a: Args) -> Result<()> {
    let rc = env.config.runner.clone().unwrap_or_default();
    let gh = match (a.repo.as_deref(), env.config.github.clone()) {
        (Some(r), Some(mut g)) => {
            g.repo = r.to_string();
            g
        }
        (Some(r), None) => GithubConfig::new(r, "https://api.github.com"),
        (None, Some(g)) => g,
        (None, None) => {
            anyhow::bail!("which repo? pass `--repo owner/name` or set `[github] repo`")
        }
    };
    let backend: labbook_models::BackendChoice = a
        .backend
        .parse()
        .map_err(|e| anyhow::anyhow!("--backend: {e}"))?;
    if !a.gpus.is_empty() && backend == labbook_models::BackendChoice::Cpu {
        anyhow::bail!("--gpus hands out GPUs to CUDA jobs; add `--backend cuda`");
    }
    let executor = match a.executor.as_deref() {
        Some("slurm") => labbook::config::Executor::Slurm,
        Some(_) => labbook::config::Executor::Local,
        None => rc.executor,
    };
    if a.dry_run && executor != labbook::config::Executor::Slurm {
        anyhow::bail!("--dry-run prints a Slurm job script; add `--executor slurm`");
    }
    if executor == labbook::config::Executor::Slurm && !a.gpus.is_empty() {
        anyhow::bail!(
            "--gpus places jobs on this machine's GPUs; with the Slurm executor, Slurm hands them out (`--gres`, see [runner.slurm])"
        );
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = a.gpus.iter().find(|g| !seen.insert(**g)) {
        anyhow::bail!("--gpus lists GPU {dup} twice");
    }
    let opts = RunnerOptions {
        workdir: std::path::absolute(&a.workdir)?,
        backend,
        parallel: a
            .parallel
            .map(|p| p as usize)
            .unwrap_or(a.gpus.len().max(1)),
        gpus: a.gpus.clone(),
        slurm: match executor {
            labbook::config::Executor::Local => None,
            labbook::config::Executor::Slurm => Some(labbook::remote::SlurmOptions {
                settings: rc.slurm.clone(),
                poll: parse_duration(rc.slurm.poll.as_deref().unwrap_or("5s"))
                    .context("[runner.slurm] poll")?,
            }),
        },
        poll: parse_duration(&a.poll).context("--poll")?,
        once: a.once,
        allow: rc.allow.clone(),
        clone_url: rc
            .clone_url
            .clone()
            .unwrap_or_else(|| format!("https://github.com/{}.git", gh.repo)),
        build: rc.build.clone(),
        bin: rc.bin.as_ref().map(PathBuf::from),
        lease: parse_duration(&rc.lease).context("[runner] lease")?,
        status_every: parse_duration(&rc.status_every).context("[runner] status_every")?,
        name: rc
            .name
            .clone()
            .or_else(labbook::recorder::hostname)
            .unwrap_or_else(|| "runner".into()),
        runners: gh.runners.clone(),
        env: rc.env.clone(),
        max_job_time: Some(parse_duration(&rc.max_job_time).context("[runner] max_job_time")?)
            .filter(|d| !d.is_zero()),
        wrap: rc.wrap.clone(),
        max_log: labbook::config::parse_size(&rc.max_log).context("[runner] max_log")?,
        stop: Arc::new(AtomicBool::new(false)),
        events: Arc::new(|line: &str| {
            println!("{} {line}", chrono::Utc::now().format("%H:%M:%S"));
        }),
    };
    for name in &opts.env {
        if !labbook::remote::job_process::passes_to_job(name, &opts.env) {
            anyhow::bail!(
                "[runner] env names {name}, which is never passed to jobs (the token and the runner's notebook stay with the runner)"
            );
        }
    }
    if opts.lease < std::time::Duration::from_secs(1) {
        anyhow::bail!(
            "[runner] lease = \"{}\" is too short (at least 1s)",
            rc.lease
        );
    }
    {
        let stop = opts.stop.clone();
        // SIGINT/SIGTERM: kill running jobs and give their requests back, then exit.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let token = Token::discover()?;
    if a.dry_run {
        match labbook::remote::runner::dry_run(&gh, &token, opts)? {
            Some((n, script)) => {
                eprintln!("# the job script for request #{n} (nothing was claimed or submitted):");
                print!("{script}");
            }
            None => eprintln!("no open request this runner would take"),
        }
        return Ok(());
    }
    if !env.json {
        println!(
            "runner {} on {} (backend {}{}, {} at a time, allow: {}); workdir {}",
            opts.name,
            gh.repo,
            opts.backend,
            if opts.gpus.is_empty() {
                String::new()
            } else {
                format!(", GPUs {:?}", opts.gpus)
            },
            opts.parallel,
            opts.allow.join(", "),
            opts.workdir.display()
        );
    }
    let report = run_runner(&gh, &token, opts)?;
    if env.json {
        return super::output::json(&report);
    }
    println!(
        "runner done: {} run, {} refused, {} given up",
        report.ran.len(),
        report.refused.len(),
        report.given_up.len()
    );
    Ok(())
}
