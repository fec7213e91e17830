//! The research options (`[model] attn_softmax`, `attn_bias`, …) from their shipped configs
//! under `configs/ideas/`: each value trains from the config alone (its loss falls on a tiny
//! copy of the task), and an unknown value is refused with the valid ones listed.
use std::path::Path;
use std::sync::atomic::AtomicBool;

use labbook_models::config::TaskKind;
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

/// Trains `name` with `settings` at a tiny size; the mean loss of the first and last 10 steps,
/// and the loss of a uniform guess over the task's possible targets.
fn first_and_last_loss(name: &str, settings: &[(&str, &str)]) -> (f64, f64, f64) {
    let mut cfg = idea(name);
    let tiny = [
        ("model.d_model", "16"),
        ("model.n_heads", "2"),
        ("task.seq_len", "16"),
        ("task.n_memorize", "4"),
        ("task.eval_seq_lens", "[16]"),
        ("task.eval_samples", "4"),
        ("train.steps", "240"),
        ("train.warmup_steps", "10"),
        ("train.lr", "3e-3"),
        ("train.batch_size", "8"),
    ];
    // The case's settings last: they may lengthen the tiny run.
    let pairs: Vec<(&str, &str)> = tiny.into_iter().chain(settings.iter().copied()).collect();
    cfg.set_all(&pairs)
        .unwrap_or_else(|e| panic!("{name} {settings:?}: {e}"));
    // Selective copying's targets are data tokens only (not the noise and marker tokens).
    let targets = match cfg.task.kind {
        TaskKind::SelectiveCopying => cfg.task.vocab_size - 2,
        _ => cfg.task.vocab_size,
    };
    let cancel = AtomicBool::new(false);
    let opts = TrainOptions {
        checkpoint_dir: None,
        cancel: &cancel,
        resume_from: None,
    };
    let mut losses = Losses::default();
    train(&cfg, opts, &mut losses).unwrap_or_else(|e| panic!("{name} {settings:?}: {e}"));
    let l = &losses.0;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    (
        mean(&l[..10]),
        mean(&l[l.len() - 10..]),
        (targets as f64).ln(),
    )
}

/// Each setting's loss must fall below the uniform guess over the task's targets: getting
/// there takes mixing information across positions, not just calibrating the output.
fn check_settings(name: &str, cases: &[&[(&str, &str)]]) {
    for settings in cases {
        let (first, last, uniform) = first_and_last_loss(name, settings);
        println!("{name} {settings:?}: loss {first:.3} → {last:.3}, uniform {uniform:.3}");
        assert!(
            last < uniform - 0.05 && last < first,
            "{name} {settings:?}: loss {first:.3} → {last:.3} did not fall below {uniform:.3}"
        );
    }
}

fn check_option(name: &str, key: &str, values: &[&str]) {
    let cases: Vec<[(&str, &str); 1]> = values.iter().map(|v| [(key, *v)]).collect();
    let cases: Vec<&[(&str, &str)]> = cases.iter().map(|c| &c[..]).collect();
    check_settings(name, &cases);
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
fn every_mamba_conv_dilation_and_kernel_trains_from_its_config() {
    // A tiny Mamba needs more steps and a larger learning rate to start copying.
    let longer = [("train.steps", "600"), ("train.lr", "1e-2")];
    let cases: Vec<Vec<(&str, &str)>> = [
        ("model.conv_dilation", "1"),
        ("model.conv_dilation", "2"),
        ("model.conv_dilation", "4"),
        ("model.d_conv", "2"),
        ("model.d_conv", "8"),
        ("model.conv_kind", "none"),
        ("model.conv_bc", "true"),
    ]
    .into_iter()
    .map(|kv| longer.iter().copied().chain([kv]).collect())
    .collect();
    let cases: Vec<&[(&str, &str)]> = cases.iter().map(|c| &c[..]).collect();
    check_settings("mamba-conv.toml", &cases);
}

#[test]
fn mamba_conv_options_that_act_on_nothing_are_refused() {
    for (pairs, key) in [
        (
            [("model.conv_kind", "none"), ("model.conv_dilation", "2")],
            "model.conv_dilation",
        ),
        (
            [("model.kind", "mamba-lti"), ("model.conv_bc", "true")],
            "model.conv_bc",
        ),
    ] {
        let err = idea("mamba-conv.toml")
            .set_all(&pairs)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{pairs:?}: {err}");
    }
    // Together with conv_bc the dilation has a conv to act on.
    let mut cfg = idea("mamba-conv.toml");
    let pairs = [
        ("model.conv_kind", "none"),
        ("model.conv_bc", "true"),
        ("model.conv_dilation", "2"),
    ];
    cfg.set_all(&pairs).unwrap();
}

#[test]
fn every_mlp_conv_kernel_trains_from_its_config() {
    check_option("mlp-conv.toml", "model.mlp_conv", &["0", "2", "4"]);
}

#[test]
fn the_contrast_preset_and_its_conv_layer_train_from_the_config() {
    check_settings(
        "contrast.toml",
        &[
            &[],
            &[("model.kind", "hybrid"), ("model.pattern", "MMA")],
            &[("model.kind", "hybrid"), ("model.pattern", "CCA")],
        ],
    );
}

#[test]
fn the_contrast_preset_is_a_repeating_cma_pattern() {
    let mut cfg = idea("contrast.toml");
    assert_eq!(cfg.layer_pattern(), "CMA");
    cfg.set("model.n_layers", "7").unwrap();
    assert_eq!(cfg.layer_pattern(), "CMACMAC");
}

#[test]
fn unknown_option_values_are_refused_with_the_valid_ones() {
    for (key, bad, valid) in [
        ("attn_softmax", "softmax2", "softmax1"),
        ("attn_bias", "rotary", "alibi"),
        ("conv_kind", "causal", "depthwise"),
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
