use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, Subcommand};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Papers from a .bib file; skips entries whose DOI, arXiv id or key is already present.
    Bibtex { file: PathBuf },
}

pub fn cmd_import(env: &Env, a: Args) -> Result<()> {
    let What::Bibtex { file } = a.what;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let mut store = env.open()?;
    let report = store.import_bibtex(&text, &file.display().to_string())?;
    if env.json {
        return super::output::json(&report);
    }
    for (key, id) in &report.added {
        println!("added   {id}  {key}");
    }
    for (key, why) in &report.skipped {
        println!("skipped {key}: {why}");
    }
    println!(
        "{} added, {} skipped",
        report.added.len(),
        report.skipped.len()
    );
    Ok(())
}
