//! Runs one config and prints evaluation metrics as JSON lines (for reproductions).
//!
//! `cargo run --release -p labbook-models --example run -- configs/x.toml [section.key=value...]`
use std::sync::atomic::AtomicBool;

use labbook_models::{RunConfig, TrainObserver, TrainOptions, train};

struct Print {
    every: u64,
}

impl TrainObserver for Print {
    fn on_step(&mut self, step: u64, total: u64, metrics: &[(String, f64)]) {
        if step.is_multiple_of(self.every) || step == total {
            let m: Vec<String> = metrics.iter().map(|(k, v)| format!("{k}={v:.4}")).collect();
            println!("step {step}/{total} {}", m.join(" "));
        }
    }
    fn on_eval(&mut self, step: u64, metrics: &[(String, f64)]) {
        let m: Vec<String> = metrics.iter().map(|(k, v)| format!("{k}={v:.4}")).collect();
        println!("eval {step} {}", m.join(" "));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: run CONFIG [section.key=value...]");
    let mut cfg = RunConfig::from_file(path.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    for kv in args {
        let (k, v) = kv.split_once('=').expect("override as section.key=value");
        cfg.set(k, v).unwrap_or_else(|e| panic!("{e}"));
    }
    let cancel = AtomicBool::new(false);
    let every = (cfg.train.steps / 20).max(1);
    let opts = TrainOptions {
        checkpoint_dir: None,
        cancel: &cancel,
        resume_from: None,
    };
    let summary = train(&cfg, opts, &mut Print { every }).unwrap_or_else(|e| panic!("{e}"));
    println!("summary {}", serde_json::to_string(&summary).unwrap());
}
