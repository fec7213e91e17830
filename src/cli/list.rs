use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::model::{ItemId, Kind};
use labbook::store::ListFilter;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Only this kind (task, paper, idea, experiment).
    kind: Option<Kind>,
    #[arg(long, short = 's')]
    status: Option<String>,
    #[arg(long, short = 't')]
    tag: Option<String>,
    /// Only items linked to this one (either direction).
    #[arg(long, value_name = "ID")]
    linked_to: Option<ItemId>,
    /// Include archived items.
    #[arg(long, short = 'a')]
    all: bool,
}

pub fn cmd_list(env: &Env, a: Args) -> Result<()> {
    let store = env.open()?;
    let items = store.list(&ListFilter {
        kind: a.kind,
        status: a.status,
        tag: a.tag,
        linked_to: a.linked_to,
        include_archived: a.all,
    })?;
    if env.json {
        return super::output::json(&items);
    }
    if items.is_empty() {
        println!("No matching items.");
        return Ok(());
    }
    super::output::item_table(&items)
}
