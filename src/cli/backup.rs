use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// New file to write the copy to.
    path: PathBuf,
}

pub fn cmd_backup(env: &Env, a: Args) -> Result<()> {
    let store = env.open()?;
    store.backup(&a.path)?;
    if env.json {
        return super::output::json(&serde_json::json!({"backup": a.path}));
    }
    println!(
        "backed up {} to {}",
        store.path().display(),
        a.path.display()
    );
    Ok(())
}
