use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::model::ItemId;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    id: ItemId,
    /// The comment (Markdown). `-` reads it from stdin.
    text: String,
}

pub fn cmd_comment(env: &Env, a: Args) -> Result<()> {
    let text = if a.text == "-" {
        super::add::read_body_file("-")?
    } else {
        a.text
    };
    let mut store = env.open()?;
    let c = store.comment(a.id, &text)?;
    if env.json {
        return super::output::json(&c);
    }
    println!("commented on {}", a.id);
    Ok(())
}
