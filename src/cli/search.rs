use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::model::Kind;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Words to find, all of them; end a word with `*` to match it as a prefix (`kern*`).
    query: Vec<String>,
    /// Only this kind.
    #[arg(long, short = 'k')]
    kind: Option<Kind>,
    #[arg(long, short = 'n', default_value_t = 20)]
    limit: usize,
}

pub fn cmd_search(env: &Env, a: Args) -> Result<()> {
    let query = a.query.join(" ");
    if query.trim().is_empty() {
        anyhow::bail!("the search query is empty; give one or more words (`word*` for a prefix)");
    }
    let store = env.open()?;
    let hits = store.search(&query, a.kind, a.limit)?;
    if env.json {
        return super::output::json(&hits);
    }
    if hits.is_empty() {
        match a.query.last() {
            Some(last) if !last.ends_with('*') => {
                println!("No matches. Words match whole; `{last}*` matches as a prefix.")
            }
            _ => println!("No matches."),
        }
    }
    for h in hits {
        println!("{:<6} {:<10} {}", h.id.to_string(), h.status, h.title);
        println!("       {}", h.snippet.replace('\n', " "));
    }
    Ok(())
}
