use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::model::Kind;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Words to find, all of them: whole words, the last one also as a prefix (after the
    /// exact matches); end any word with `*` to match it as a prefix (`kern*`). Chinese,
    /// Japanese, Korean, Thai and emoji are matched as substrings.
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
        println!(
            "No matches. Every word must occur: as a whole word, the last one also as a prefix \
             (`word*` makes any word a prefix)."
        );
    }
    for h in hits {
        println!("{:<6} {:<10} {}", h.id.to_string(), h.status, h.title);
        println!("       {}", h.snippet.replace('\n', " "));
    }
    Ok(())
}
