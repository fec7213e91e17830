use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::model::{ItemId, Relation};

use super::Env;

#[derive(ClapArgs)]
pub struct LinkArgs {
    /// Source item, e.g. I-2.
    a: ItemId,
    /// Target item, e.g. P-1.
    b: ItemId,
    /// Relation: relates-to, motivated-by, tests, for, cites, builds-on, implements,
    /// blocks, supersedes. Default: the usual one for the two kinds.
    #[arg(long = "as", value_name = "REL")]
    rel: Option<Relation>,
}

#[derive(ClapArgs)]
pub struct UnlinkArgs {
    a: ItemId,
    b: ItemId,
    /// Only remove links of this relation.
    #[arg(long = "as", value_name = "REL")]
    rel: Option<Relation>,
}

pub fn cmd_link(env: &Env, a: LinkArgs) -> Result<()> {
    let mut store = env.open()?;
    let (rel, new) = store.link(a.a, a.b, a.rel)?;
    if env.json {
        return super::output::json(
            &serde_json::json!({"source": a.a, "target": a.b, "relation": rel, "created": new}),
        );
    }
    let note = if new { "" } else { " (already linked)" };
    println!("{} {rel} {}{note}", a.a, a.b);
    Ok(())
}

pub fn cmd_unlink(env: &Env, a: UnlinkArgs) -> Result<()> {
    let mut store = env.open()?;
    let n = store.unlink(a.a, a.b, a.rel)?;
    if env.json {
        return super::output::json(&serde_json::json!({"removed": n}));
    }
    println!(
        "removed {n} link{} between {} and {}",
        if n == 1 { "" } else { "s" },
        a.a,
        a.b
    );
    Ok(())
}
