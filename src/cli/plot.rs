use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use labbook::model::{ItemId, RunId};
use labbook::{plot, report};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Runs to draw (R-n R-m ...), one curve each.
    #[arg(required = true, value_name = "R-n")]
    runs: Vec<RunId>,
    /// Metric to draw (loss, accuracy, eval/acc@16, ...).
    #[arg(long, short = 'm', default_value = "loss")]
    metric: String,
    /// File to write: `.png` or `.svg` (`.png` is added when the name has no extension).
    #[arg(long, short = 'o', value_name = "FILE.png")]
    out: PathBuf,
    /// What the x axis shows: `step`, or `time` (wall-clock seconds since each run started).
    #[arg(long, value_enum, default_value = "step")]
    x: XAxis,
    /// Logarithmic y axis.
    #[arg(long)]
    log: bool,
    /// Moving average over K points.
    #[arg(long, default_value_t = 1, value_name = "K")]
    smooth: usize,
    /// Draw runs whose configs differ only in `train.seed` as one mean curve with a ±1 sd
    /// band (`report` always does).
    #[arg(long)]
    group_seeds: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum XAxis {
    Step,
    Time,
}

pub fn cmd_plot(env: &Env, a: Args) -> Result<()> {
    let out = plot::plot_path(&a.out)?;
    let store = env.open()?;
    let time = a.x == XAxis::Time;
    let opts = report::CurveOptions {
        smooth: a.smooth,
        time,
        group_seeds: a.group_seeds,
    };
    let curves = report::curves(&store, &a.runs, &a.metric, opts)?;
    let title = a
        .runs
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let axes = plot::Axes { log: a.log, time };
    plot::plot_file(&out, &title, &a.metric, &curves, axes)?;
    if env.json {
        return super::output::json(&serde_json::json!({ "out": out.display().to_string() }));
    }
    println!("{}", out.display());
    Ok(())
}

#[derive(ClapArgs)]
pub struct ReportArgs {
    /// The experiment (E-n).
    experiment: ItemId,
    /// Directory for report.md and its plots (default reports/E-n beside the notebook).
    #[arg(long, short = 'o', value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn cmd_report(env: &Env, a: ReportArgs) -> Result<()> {
    let store = env.open()?;
    let dir = a.out.unwrap_or_else(|| {
        env.db_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join("reports")
            .join(a.experiment.to_string())
    });
    let r = report::experiment_report(&store, a.experiment, &dir)?;
    if env.json {
        return super::output::json(&r);
    }
    println!("{}", r.markdown.display());
    for p in &r.plots {
        println!("{}", p.display());
    }
    Ok(())
}
