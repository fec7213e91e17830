use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, ValueEnum};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    format: Format,
    /// Write to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The whole notebook as one Markdown document, grouped by kind.
    Markdown,
    /// Every item with links and comments, and every run.
    Json,
    /// Papers as BibTeX.
    Bibtex,
}

pub fn cmd_export(env: &Env, a: Args) -> Result<()> {
    let store = env.open()?;
    let text = match a.format {
        Format::Markdown => labbook::export::markdown(&store)?,
        Format::Json => serde_json::to_string_pretty(&labbook::export::notebook(&store)?)? + "\n",
        Format::Bibtex => labbook::export::bibtex(&store)?,
    };
    match a.out {
        Some(path) => {
            // Write beside the target then rename, so a failure never leaves half a file.
            let tmp = path.with_extension("labbook-tmp");
            std::fs::write(&tmp, &text)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
