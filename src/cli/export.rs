use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, ValueEnum};

use labbook::model::RunId;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    format: Format,
    /// `curves` only: the runs whose points to write (R-n R-m ...).
    #[arg(value_name = "R-n")]
    runs: Vec<RunId>,
    /// `curves` only: only this metric (repeat for more; default every logged metric).
    #[arg(long, short = 'm')]
    metric: Vec<String>,
    /// `curves` only: `csv` (run,metric,step,wall_time_s,value) or `json`.
    #[arg(long = "format", value_name = "FORMAT", default_value = "csv")]
    curve_format: CurveFormat,
    /// Write to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CurveFormat {
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The whole notebook as one Markdown document, grouped by kind.
    Markdown,
    /// Every item with links and comments, and every run.
    Json,
    /// Papers as BibTeX.
    Bibtex,
    /// Every logged point of the given runs (`export curves R-1 R-2 --format csv`), for
    /// plotting elsewhere.
    Curves,
}

pub fn cmd_export(env: &Env, a: Args) -> Result<()> {
    let curves = matches!(a.format, Format::Curves);
    if curves && a.runs.is_empty() {
        anyhow::bail!("`export curves` needs the runs to export: `export curves R-1 R-2 …`");
    }
    if !curves && (!a.runs.is_empty() || !a.metric.is_empty()) {
        anyhow::bail!("runs and `--metric` go with `export curves` only");
    }
    let store = env.open()?;
    let text = match a.format {
        Format::Markdown => labbook::export::markdown(&store)?,
        Format::Json => serde_json::to_string_pretty(&labbook::export::notebook(&store)?)? + "\n",
        Format::Bibtex => labbook::export::bibtex(&store)?,
        Format::Curves => {
            let c = labbook::export::curves(&store, &a.runs, &a.metric)?;
            match a.curve_format {
                CurveFormat::Csv => labbook::export::curves_csv(&c),
                CurveFormat::Json => serde_json::to_string_pretty(&c)? + "\n",
            }
        }
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
