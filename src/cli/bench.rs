use anyhow::Result;
use clap::{Args as ClapArgs, Subcommand};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Store speed on a fresh temporary notebook: item inserts, metric inserts, search latency.
    Store(StoreArgs),
    /// Training speed of one model shape: forward + backward + AdamW, median ms per step.
    Train(TrainArgs),
    /// TUI speed: first frame and filter keystroke latency on a large temporary notebook.
    Tui(TuiArgs),
}

#[derive(ClapArgs)]
struct TrainArgs {
    /// mamba, transformer or hybrid.
    #[arg(long, default_value = "mamba")]
    model: String,
    #[arg(long, default_value_t = 64)]
    d_model: usize,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed steps (after warm-up).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    backend: labbook_models::backend::BackendChoice,
}

#[derive(ClapArgs)]
struct TuiArgs {
    /// Items in the temporary notebook.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Runs in the temporary notebook.
    #[arg(long, default_value_t = 100)]
    runs: usize,
}

#[derive(ClapArgs)]
struct StoreArgs {
    /// Items to insert.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Metric points to insert.
    #[arg(long, default_value_t = 1_000_000)]
    metrics: usize,
    /// Metric points per transaction (a training run flushes about once a second).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Search queries to time.
    #[arg(long, default_value_t = 1_000)]
    searches: usize,
}

pub fn cmd_bench(_env: &Env, a: Args) -> Result<()> {
    match a.what {
        What::Store(args) => {
            let cfg = labbook::bench::StoreBench {
                items: args.items,
                metrics: args.metrics,
                batch: args.batch,
                searches: args.searches,
            };
            let report = labbook::bench::store(&cfg, |msg| eprintln!("{msg}"))?;
            super::output::json(&report)
        }
        What::Train(t) => {
            let r = labbook_models::train::bench_train(
                &t.model, t.d_model, t.layers, t.seq_len, t.batch, t.steps, t.backend,
            )?;
            super::output::json(&r)
        }
        What::Tui(args) => {
            let report = crate::tui::bench::run(args.items, args.runs, |msg| eprintln!("{msg}"))?;
            super::output::json(&report)
        }
    }
}
