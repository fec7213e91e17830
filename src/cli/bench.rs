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
    /// Training speed of one model shape: forward + backward + AdamW, median ms per step (a
    /// line of text; JSON with `--json`). Every bench prints a summary for people, JSON with
    /// `--json`.
    Train(TrainArgs),
    /// TUI speed: first frame and filter keystroke latency on a large temporary notebook.
    Tui(TuiArgs),
    /// Cost of metric logging: train a config with the recorder on a temporary notebook and
    /// with a no-op observer; time spent in the recorder vs step time.
    Logging(LoggingArgs),
}

#[derive(ClapArgs)]
struct LoggingArgs {
    /// Run config to train (default configs/smoke.toml).
    #[arg(default_value = "configs/smoke.toml", value_name = "CONFIG")]
    run_config: std::path::PathBuf,
    /// Steps to train (overrides train.steps).
    #[arg(long, default_value_t = 300)]
    steps: u64,
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
    /// f32, or bf16 / f16 (mixed precision with f32 master weights; CUDA only).
    #[arg(long, default_value = "f32")]
    precision: labbook_models::precision::Precision,
    /// Train on batches from this token file (with --dtype and --vocab) or text file,
    /// drawn by the data thread as in a run, instead of generated sequences.
    #[arg(long, value_name = "PATH")]
    data: Option<String>,
    /// Element type of a --data token file: u16 or u32 (without it, --data is byte-level
    /// text).
    #[arg(long, requires = "data")]
    dtype: Option<String>,
    /// Vocabulary size of a --data token file.
    #[arg(long, requires = "dtype")]
    vocab: Option<usize>,
}

impl TrainArgs {
    /// The `[task]` a run on `--data` would have.
    fn data_section(&self) -> Result<Option<labbook_models::tasks::TaskSection>> {
        let Some(path) = &self.data else {
            return Ok(None);
        };
        let kind = if self.dtype.is_some() {
            "tokens"
        } else {
            "text"
        };
        let mut toml = format!(
            "kind = \"{kind}\"\npath = {}\nseq_len = {}\n",
            toml_string(path),
            self.seq_len
        );
        if let Some(d) = &self.dtype {
            toml.push_str(&format!("dtype = {}\n", toml_string(d)));
        }
        if let Some(v) = self.vocab {
            toml.push_str(&format!("vocab_size = {v}\n"));
        }
        let section = toml::from_str(&toml).map_err(|e| anyhow::anyhow!("--data: {e}"))?;
        Ok(Some(section))
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[derive(ClapArgs)]
struct TuiArgs {
    /// Items in the temporary notebook.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Runs in the temporary notebook.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Runs streaming metrics while the timings are taken (and the run view is timed).
    #[arg(long, default_value_t = 3)]
    streaming: usize,
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

pub fn cmd_bench(env: &Env, a: Args) -> Result<()> {
    match a.what {
        What::Store(args) => {
            let cfg = labbook::bench::StoreBench {
                items: args.items,
                metrics: args.metrics,
                batch: args.batch,
                searches: args.searches,
            };
            let report = labbook::bench::store(&cfg, |msg| eprintln!("{msg}"))?;
            if env.json {
                return super::output::json(&report);
            }
            super::output::summary("bench store (ms, items/s, points/s):", &report)
        }
        What::Train(t) => {
            let data = t.data_section()?;
            let shape = labbook_models::BenchShape {
                model: t.model.clone(),
                d_model: t.d_model,
                layers: t.layers,
                seq_len: t.seq_len,
                batch: t.batch,
                steps: t.steps,
                data,
                precision: t.precision,
            };
            let r = labbook_models::bench::bench_train(&shape, t.backend)?;
            if env.json {
                return super::output::json(&r);
            }
            let data = if t.data.is_some() {
                format!(
                    ", waiting for data {:.2}% of step time",
                    100.0 * r.data_wait_share
                )
            } else {
                String::new()
            };
            let skipped = match r.skipped_steps {
                0 => String::new(),
                n => format!(", {n} f16 steps skipped (overflow)"),
            };
            println!(
                "{} ({}), d_model {}, layers {}, seq_len {}, batch {}, {} {}: median {:.1} \
                 ms/step (fastest {:.1}), {:.0} tokens/s over {} steps, {} parameters{data}{skipped}",
                r.model,
                r.pattern,
                r.d_model,
                r.layers,
                r.seq_len,
                r.batch,
                r.backend,
                r.precision,
                r.ms_per_step,
                r.ms_per_step_min,
                r.tokens_per_s,
                r.steps,
                r.n_params
            );
            Ok(())
        }
        What::Tui(args) => {
            let report = crate::tui::bench::run(args.items, args.runs, args.streaming, |msg| {
                eprintln!("{msg}")
            })?;
            if env.json {
                return super::output::json(&report);
            }
            super::output::summary("bench tui (ms):", &report)
        }
        What::Logging(args) => bench_logging(env, &args),
    }
}

fn bench_logging(env: &Env, a: &LoggingArgs) -> Result<()> {
    use std::sync::atomic::AtomicBool;
    let mut cfg = super::run::load_config(&a.run_config, &[])?;
    cfg.set("train.steps", &a.steps.to_string())?;
    cfg.set("train.checkpoint_every", "0")?;
    let cancel = AtomicBool::new(false);
    eprintln!("training {} steps with a no-op observer…", a.steps);
    let t = std::time::Instant::now();
    labbook_models::train::train(
        &cfg,
        labbook_models::train::TrainOptions {
            checkpoint_dir: None,
            cancel: &cancel,
            resume_from: None,
        },
        &mut labbook_models::train::NoopObserver,
    )?;
    let noop_s = t.elapsed().as_secs_f64();
    eprintln!("training {} steps with the recorder…", a.steps);
    let dir = tempfile::tempdir()?;
    let mut store = labbook::Store::open(&dir.path().join("bench.db"), "bench")?;
    let run = labbook::recorder::create_run(
        &mut store,
        &cfg,
        None,
        None,
        &labbook::recorder::Provenance::default(),
    )?;
    let out = labbook::recorder::train_run(
        &mut store,
        run,
        &cfg,
        &dir.path().join("ckpt"),
        &cancel,
        &mut (),
    )?;
    let steps = out.steps.max(1) as f64;
    let report = serde_json::json!({
        "config": a.run_config.display().to_string(),
        "steps": out.steps,
        "step_ms_noop_observer": noop_s * 1e3 / steps,
        "step_ms_with_recorder": out.wall_time_s * 1e3 / steps,
        "logging_ms_total": out.logging_s * 1e3,
        "logging_us_per_step": out.logging_s * 1e6 / steps,
        "logging_share_of_step_time_pct": out.logging_s / out.wall_time_s * 100.0,
        "metric_points": out.metric_points,
        "flushes": out.flushes,
    });
    if env.json {
        return super::output::json(&report);
    }
    super::output::summary("bench logging:", &report)
}
