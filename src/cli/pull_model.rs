//! `labbook pull-model R-n`: a remote run's weights and full-resolution curves.
use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::model::RunId;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// The remote run (its results must name a weights asset).
    #[arg(value_name = "R-n")]
    run: RunId,
}

/// Downloads the run's release asset into `runs/R-n/` (`model.safetensors`) and replaces
/// its downsampled curves with the full-resolution ones.
pub fn cmd_pull_model(env: &Env, a: Args) -> Result<()> {
    let gh = env.config.github.clone().ok_or_else(|| {
        anyhow::anyhow!("no [github] section in the config; pull-model reads the run's request issue in `[github] repo`")
    })?;
    let token = labbook::github::Token::discover()?;
    let mut store = env.open()?;
    let dir = labbook::recorder::run_dir(&env.db_path, a.run);
    let pulled = labbook::remote::pull::pull_model(&mut store, &gh, &token, a.run, &dir)?;
    if env.json {
        return super::output::json(&pulled);
    }
    match &pulled.model {
        Some(m) => println!(
            "{}: weights in {} ({:.1} MB); {} curves, {} points imported at full resolution",
            pulled.run,
            m.display(),
            pulled.bytes as f64 / 1e6,
            pulled.curves,
            pulled.points
        ),
        None => println!(
            "{}: no weights (the run left no checkpoint); {} curves, {} points imported at full resolution",
            pulled.run, pulled.curves, pulled.points
        ),
    }
    Ok(())
}
