use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::model::RunId;
use labbook::recorder;
use labbook_models::config::RunConfig;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// The run whose weights to write.
    #[arg(value_name = "R-n")]
    run: RunId,
    /// The safetensors file to write (PyTorch names and layouts; mambapy's for Mamba layers).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// A checkpoint directory other than the run's own (`runs/R-n/`).
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
}

/// `labbook export-model R-n --out model.safetensors`.
pub fn cmd_export_model(env: &Env, a: Args) -> Result<()> {
    let (cfg, dir) = trained_run(env, a.run, a.checkpoint)?;
    labbook_models::checkpoint::export_checkpoint(&cfg, &dir, &a.out)?;
    eprintln!(
        "{}: weights of {} written to {} (load them with train.init_from, or in PyTorch)",
        a.run,
        dir.display(),
        a.out.display()
    );
    Ok(())
}

/// Run `run`'s config snapshot and the checkpoint directory to read its weights from.
pub(crate) fn trained_run(
    env: &Env,
    run: RunId,
    checkpoint: Option<PathBuf>,
) -> Result<(RunConfig, PathBuf)> {
    let store = env.open()?;
    let r = store.get_run(run)?;
    let cfg = RunConfig::parse(&r.config, &format!("{run} config snapshot"))?;
    let dir = checkpoint.unwrap_or_else(|| recorder::run_dir(&env.db_path, run));
    if !recorder::has_checkpoint(&dir) {
        anyhow::bail!(
            "{run} has no checkpoint in {} (a remote run's weights stay on the runner; pass --checkpoint DIR)",
            dir.display()
        );
    }
    Ok((cfg, dir))
}
