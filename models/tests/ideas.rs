//! The research options (`[model] attn_softmax`, `attn_bias`, …) from their shipped configs
//! under `configs/ideas/`: each value trains from the config alone (its loss falls on a tiny
//! copy of the task), and an unknown value is refused with the valid ones listed.
use std::path::Path;
use std::sync::atomic::AtomicBool;

use labbook_models::{RunConfig, TrainObserver, TrainOptions, train};

/// The loss of every step.
#[derive(Default)]
struct Losses(Vec<f64>);

impl TrainObserver for Losses {
    fn on_step(&mut self, _step: u64, _total: u64, metrics: &[(String, f64)]) {
        let loss = metrics.iter().find(|(k, _)| k == "loss").expect("loss").1;
        self.0.push(loss);
    }
    fn on_eval(&mut self, _step: u64, _metrics: &[(String, f64)]) {}
}

fn idea(name: &str) -> RunConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/ideas")
        .join(name);
    RunConfig::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Trains `name` with `key = value` at a tiny size; the mean loss of the first and last 10
/// steps.
fn first_and_last_loss(name: &str, key: &str, value: &str) -> (f64, f64) {
    let mut cfg = idea(name);
    cfg.set_all(&[
        (key, value),
        ("model.d_model", "16"),
        ("model.n_heads", "2"),
        ("task.seq_len", "16"),
        ("task.eval_seq_lens", "[16]"),
        ("task.eval_samples", "4"),
        ("train.steps", "120"),
        ("train.warmup_steps", "10"),
        ("train.lr", "3e-3"),
        ("train.batch_size", "8"),
    ])
    .unwrap_or_else(|e| panic!("{name} {key}={value}: {e}"));
    let cancel = AtomicBool::new(false);
    let opts = TrainOptions {
        checkpoint_dir: None,
        cancel: &cancel,
        resume_from: None,
    };
    let mut losses = Losses::default();
    train(&cfg, opts, &mut losses).unwrap_or_else(|e| panic!("{name} {key}={value}: {e}"));
    let l = &losses.0;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    (mean(&l[..10]), mean(&l[l.len() - 10..]))
}

/// The loss must fall below ln 16, the loss of a uniform guess over the task's 16 tokens:
/// getting there takes attending to earlier tokens, not just calibrating the output.
fn check_option(name: &str, key: &str, values: &[&str]) {
    let uniform = 16f64.ln();
    for value in values {
        let (first, last) = first_and_last_loss(name, key, value);
        assert!(
            last < uniform - 0.05 && last < first,
            "{name} {key} = {value}: loss {first:.3} → {last:.3} did not fall below {uniform:.3}"
        );
    }
}

#[test]
fn every_attention_softmax_trains_from_its_config() {
    check_option(
        "softmax-variants.toml",
        "model.attn_softmax",
        &["softmax", "softmax1", "ssmax", "sigmoid"],
    );
}

#[test]
fn every_attention_bias_trains_from_its_config() {
    check_option(
        "attention-bias.toml",
        "model.attn_bias",
        &["none", "alibi", "learned"],
    );
}

#[test]
fn unknown_option_values_are_refused_with_the_valid_ones() {
    for (key, bad, valid) in [
        ("attn_softmax", "softmax2", "softmax1"),
        ("attn_bias", "rotary", "alibi"),
    ] {
        let text = format!(
            "[model]\nkind = \"transformer\"\nd_model = 16\nn_layers = 1\n{key} = \"{bad}\"\n\
             [task]\nkind = \"induction-heads\"\nvocab_size = 16\nseq_len = 16\n\
             [train]\nsteps = 1\nbatch_size = 1\nlr = 1e-3\n"
        );
        let err = RunConfig::parse(&text, "bad.toml").unwrap_err().to_string();
        assert!(
            err.contains(bad) && err.contains(valid) && err.contains("bad.toml:5"),
            "{key}: {err}"
        );
    }
}
