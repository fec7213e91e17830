use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::model::ItemId;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    id: ItemId,
    /// Delete for good, with its links, comments and history.
    #[arg(long, conflicts_with = "restore")]
    purge: bool,
    /// Un-archive.
    #[arg(long)]
    restore: bool,
}

pub fn cmd_rm(env: &Env, a: Args) -> Result<()> {
    let mut store = env.open()?;
    let what = if a.purge {
        store.purge(a.id)?;
        "deleted"
    } else {
        store.archive(a.id, !a.restore)?;
        if a.restore { "restored" } else { "archived" }
    };
    if env.json {
        return super::output::json(&serde_json::json!({"id": a.id, "action": what}));
    }
    println!("{what} {}", a.id);
    Ok(())
}
