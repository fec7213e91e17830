use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use labbook::model::ItemId;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    id: ItemId,
    /// Tags to add.
    tags: Vec<String>,
    /// Tags to remove (repeatable).
    #[arg(long, short = 'r', value_name = "TAG")]
    remove: Vec<String>,
}

pub fn cmd_tag(env: &Env, a: Args) -> Result<()> {
    if a.tags.is_empty() && a.remove.is_empty() {
        bail!("nothing to do: give tags to add or --remove TAG");
    }
    let mut store = env.open()?;
    let item = store.retag(a.id, &a.tags, &a.remove)?;
    if env.json {
        return super::output::json(&item);
    }
    println!(
        "{}  tags: {}",
        item.id,
        if item.tags.is_empty() {
            "(none)".into()
        } else {
            item.tags.join(", ")
        }
    );
    Ok(())
}
