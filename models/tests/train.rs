//! End-to-end training checks: overfitting one batch, the smoke config, cancellation,
//! checkpoints and resume, divergence reporting.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use labbook_models::model::{Lm, LmConfig, Positional};
use labbook_models::tasks::{Rng, Task};
use labbook_models::{RunConfig, TrainError, TrainObserver, TrainOptions, train};

type B = Autodiff<Flex>;

fn overfit(pattern: &str) -> (f64, f64) {
    let device = Default::default();
    let task = Task::SelectiveCopying {
        vocab: 8,
        n_memorize: 3,
    };
    let batch = task.sample(&mut Rng::new(0, 0), 4, 8, false);
    let shape = [batch.batch, batch.len];
    let x = Tensor::<B, 2, Int>::from_data(TensorData::new(batch.inputs.clone(), shape), &device);
    let y = Tensor::<B, 2, Int>::from_data(TensorData::new(batch.targets.clone(), shape), &device);
    let w = Tensor::<B, 2>::from_data(TensorData::new(batch.weights.clone(), shape), &device);
    let mut model: Lm<B> = LmConfig::new(8, 16, pattern.to_string())
        .with_d_state(4)
        .with_n_heads(2)
        .with_positional(Positional::Rope)
        .init_seeded(0, &device);
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init::<B, Lm<B>>();
    let mut first = None;
    let mut last = f64::NAN;
    for _ in 0..150 {
        let (loss, _) = model.loss(x.clone(), y.clone(), w.clone());
        last = loss.clone().into_scalar().elem::<f64>();
        first.get_or_insert(last);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    (first.unwrap(), last)
}

#[test]
fn mamba_overfits_one_batch() {
    let (first, last) = overfit("MM");
    assert!(first > 1.0, "initial loss {first} should be near ln(6)");
    assert!(last < 0.05, "loss after 150 steps: {last} (from {first})");
}

#[test]
fn hybrid_overfits_one_batch() {
    let (first, last) = overfit("MA");
    assert!(last < 0.05, "loss after 150 steps: {last} (from {first})");
}

/// The loss of a model seeded with `seed` on one fixed batch: equal weights, equal loss.
fn loss_at_init(seed: u64) -> f32 {
    let device = Default::default();
    let task = Task::InductionHeads { vocab: 16 };
    let batch = task.sample(&mut Rng::new(0, 0), 2, 16, false);
    let shape = [batch.batch, batch.len];
    let x = Tensor::<B, 2, Int>::from_data(TensorData::new(batch.inputs, shape), &device);
    let y = Tensor::<B, 2, Int>::from_data(TensorData::new(batch.targets, shape), &device);
    let w = Tensor::<B, 2>::from_data(TensorData::new(batch.weights, shape), &device);
    let model: Lm<B> = LmConfig::new(16, 64, "MAMA".to_string())
        .with_n_heads(4)
        .init_seeded(seed, &device);
    model.loss(x, y, w).0.into_scalar().elem::<f32>()
}

/// Burn's CPU backends draw from one process-wide generator: runs initialised side by side
/// (as tests in one binary are) must still each get their own seed's weights.
#[test]
fn models_seeded_side_by_side_get_their_seeds_weights() {
    let alone = [loss_at_init(0), loss_at_init(1)];
    assert_ne!(alone[0], alone[1], "different seeds, different weights");
    let together: Vec<(u64, f32)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                s.spawn(move || {
                    (0..8)
                        .map(|_| (t % 2, loss_at_init(t % 2)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (seed, loss) in together {
        assert_eq!(
            loss.to_bits(),
            alone[seed as usize].to_bits(),
            "seed {seed}: {loss} side by side, {} alone",
            alone[seed as usize]
        );
    }
}

/// A run beside another thread's own autodiff loop (tests do this; so could a program) must
/// finish: a training step that ran on rayon's global pool once stole the other thread's
/// work while waiting and then waited for burn's autodiff lock held beneath it, forever. A
/// race, so not certain to show: with the step on the global pool this test hung in 1 of 2
/// tries (and the whole binary in 2 of 2).
#[test]
fn training_beside_another_autodiff_loop_finishes() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut cfg = smoke();
        // Large enough that both sides' ops split into several parallel tasks.
        cfg.set_all(&[
            ("model.d_model", "32"),
            ("task.seq_len", "64"),
            ("train.batch_size", "8"),
            ("train.steps", "300"),
            ("train.eval_every", "0"),
        ])
        .unwrap();
        let running = AtomicBool::new(true);
        let (summary, loops) = std::thread::scope(|s| {
            let run = s.spawn(|| {
                let summary = train_plain(&cfg).0;
                running.store(false, Ordering::Relaxed);
                summary
            });
            let other = s.spawn(|| {
                let mut loops = Vec::new();
                while running.load(Ordering::Relaxed) {
                    loops.push(overfit("MA"));
                }
                loops
            });
            (run.join().unwrap(), other.join().unwrap())
        });
        done.send((summary.steps, loops)).unwrap();
    });
    let (steps, loops) = finished
        .recv_timeout(std::time::Duration::from_secs(150))
        .expect("training beside another autodiff loop did not finish in 150 s");
    assert_eq!(steps, 300);
    for (first, last) in loops {
        assert!(
            last < first,
            "the other loop still learned: {first} → {last}"
        );
    }
}

#[derive(Default)]
struct Recorder {
    steps: Vec<(u64, Vec<(String, f64)>)>,
    evals: Vec<(u64, Vec<(String, f64)>)>,
    checkpoints: Vec<(u64, PathBuf)>,
    cancel_at: Option<(u64, &'static AtomicBool)>,
}

impl TrainObserver for Recorder {
    fn on_step(&mut self, step: u64, _total: u64, metrics: &[(String, f64)]) {
        self.steps.push((step, metrics.to_vec()));
        if let Some((at, flag)) = self.cancel_at
            && step == at
        {
            flag.store(true, Ordering::Relaxed);
        }
    }
    fn on_eval(&mut self, step: u64, metrics: &[(String, f64)]) {
        self.evals.push((step, metrics.to_vec()));
    }
    fn on_checkpoint(&mut self, step: u64, path: &Path) {
        self.checkpoints.push((step, path.to_path_buf()));
    }
}

fn smoke() -> RunConfig {
    RunConfig::from_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/smoke.toml"
    )))
    .unwrap()
}

fn metric(m: &[(String, f64)], key: &str) -> f64 {
    m.iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("metric {key} in {m:?}"))
        .1
}

/// Trains `cfg` to the end without checkpoints; the summary and what the observer saw.
fn train_plain(cfg: &RunConfig) -> (labbook_models::TrainSummary, Recorder) {
    let cancel = AtomicBool::new(false);
    let mut rec = Recorder::default();
    let opts = TrainOptions {
        checkpoint_dir: None,
        cancel: &cancel,
        resume_from: None,
    };
    let summary = train(cfg, opts, &mut rec).unwrap();
    (summary, rec)
}

#[test]
fn smoke_config_trains_and_reports_metrics() {
    let cfg = smoke();
    let (summary, rec) = train_plain(&cfg);
    assert_eq!(summary.steps, cfg.train.steps);
    assert!(!summary.cancelled);
    assert_eq!(rec.steps.len() as u64, cfg.train.steps);
    for key in ["loss", "accuracy", "lr", "grad_norm", "tokens_per_s"] {
        assert!(metric(&rec.steps[0].1, key).is_finite(), "{key}");
    }
    let (eval_step, eval) = rec.evals.last().unwrap();
    assert_eq!(*eval_step, cfg.train.steps);
    for key in ["eval/loss@16", "eval/acc@16", "eval/loss@32", "eval/acc@32"] {
        let v = metric(eval, key);
        assert!(v.is_finite() && v >= 0.0, "{key} = {v}");
    }
    assert!(metric(&summary.best_metrics, "eval/acc@32") >= metric(eval, "eval/acc@32"));
}

static CANCEL: AtomicBool = AtomicBool::new(false);

#[test]
fn cancel_checkpoints_and_resume_continues() {
    let dir = std::env::temp_dir().join(format!("labbook-models-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = smoke();
    let mut rec = Recorder {
        cancel_at: Some((2, &CANCEL)),
        ..Default::default()
    };
    let opts = TrainOptions {
        checkpoint_dir: Some(dir.clone()),
        cancel: &CANCEL,
        resume_from: None,
    };
    let summary = train(&cfg, opts, &mut rec).unwrap();
    assert!(summary.cancelled);
    assert_eq!(summary.steps, 2);
    assert_eq!(rec.checkpoints, vec![(2, dir.clone())]);
    assert!(dir.join("model.mpk").exists() && dir.join("state.json").exists());

    let not_cancelled = AtomicBool::new(false);
    let mut rec2 = Recorder::default();
    let opts = TrainOptions {
        checkpoint_dir: None,
        cancel: &not_cancelled,
        resume_from: Some(dir.clone()),
    };
    let summary = train(&cfg, opts, &mut rec2).unwrap();
    assert_eq!(summary.steps, cfg.train.steps);
    assert_eq!(
        rec2.steps.first().map(|s| s.0),
        Some(3),
        "resumes after step 2"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn divergence_is_a_clear_error() {
    let mut cfg = smoke();
    cfg.set("train.lr", "1e30").unwrap();
    cfg.set("train.grad_clip", "0").unwrap();
    cfg.set("train.steps", "20").unwrap();
    cfg.set("train.warmup_steps", "0").unwrap();
    let cancel = AtomicBool::new(false);
    let opts = TrainOptions {
        checkpoint_dir: None,
        cancel: &cancel,
        resume_from: None,
    };
    match train(&cfg, opts, &mut labbook_models::NoopObserver) {
        Err(e @ TrainError::NonFinite { .. }) => assert!(e.to_string().contains("step"), "{e}"),
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

#[test]
fn cuda_backend_without_feature_is_reported() {
    if cfg!(feature = "cuda") {
        return;
    }
    let mut cfg = smoke();
    cfg.set("train.backend", "cuda").unwrap();
    let cancel = AtomicBool::new(false);
    let opts = TrainOptions {
        checkpoint_dir: None,
        cancel: &cancel,
        resume_from: None,
    };
    let e = train(&cfg, opts, &mut labbook_models::NoopObserver).unwrap_err();
    assert!(e.to_string().contains("--features cuda"), "{e}");
}

#[test]
fn bench_train_reports_throughput() {
    let shape = labbook_models::BenchShape {
        d_model: 16,
        seq_len: 16,
        batch: 2,
        steps: 2,
        ..labbook_models::BenchShape::new("hybrid")
    };
    let cpu = labbook_models::BackendChoice::Cpu;
    let r = labbook_models::bench_train(&shape, cpu).unwrap();
    assert!(r.ms_per_step > 0.0 && r.tokens_per_s > 0.0);
    assert_eq!(r.pattern, "MA");
    let rnn = labbook_models::BenchShape {
        model: "rnn".into(),
        ..shape
    };
    assert!(labbook_models::bench_train(&rnn, cpu).is_err());
    let half = labbook_models::BenchShape {
        precision: labbook_models::precision::Precision::Bf16,
        ..labbook_models::BenchShape::new("hybrid")
    };
    let err = labbook_models::bench_train(&half, cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("train.precision"), "{err}");
    // Heads: 4 at the CPU targets' widths, heads of at most 64 beyond (12 at d_model 768;
    // 16 of 50 at 800), even head sizes, 1 head where none divides.
    let heads = [64, 256, 768, 1024, 800, 30, 6].map(labbook_models::bench::bench_heads);
    assert_eq!(heads, [4, 4, 12, 16, 16, 5, 1]);
}

/// Per-step training losses of the smoke config (a hybrid: one Mamba layer, one attention
/// layer) with `train.state_init` set.
fn losses_with_state_init(init: &str) -> Vec<f64> {
    let mut cfg = smoke();
    cfg.set_all(&[("train.state_init", init), ("train.steps", "4")])
        .unwrap();
    let (_, rec) = train_plain(&cfg);
    rec.steps.iter().map(|(_, m)| metric(m, "loss")).collect()
}

#[test]
fn state_init_changes_what_training_sequences_start_from() {
    let zeros = losses_with_state_init("zeros");
    let carry = losses_with_state_init("carry");
    let noise = losses_with_state_init("noise");
    assert_eq!(zeros.len(), 4);
    // `carry` has nothing to carry at step 1, so it starts exactly like `zeros`; from step 2
    // the scans start from the previous batch's final states.
    assert_eq!(carry[0], zeros[0]);
    assert!(
        carry[1..].iter().zip(&zeros[1..]).all(|(c, z)| c != z),
        "{carry:?} {zeros:?}"
    );
    // `noise` differs from the first step on, and is reproducible.
    assert_ne!(noise[0], zeros[0]);
    assert_eq!(noise, losses_with_state_init("noise"));
}

#[test]
fn state_init_is_refused_where_it_cannot_apply() {
    for name in ["induction-heads-transformer", "selective-copying-mamba-lti"] {
        let path = format!("{}/../configs/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let mut cfg = RunConfig::from_file(Path::new(&path)).unwrap();
        let err = cfg.set_all(&[("train.state_init", "carry")]).unwrap_err();
        assert!(
            err.to_string().contains("train.state_init"),
            "{name}: {err}"
        );
    }
    let mut cfg = smoke();
    let err = cfg
        .set_all(&[("train.state_init", "sideways")])
        .unwrap_err();
    assert!(err.to_string().contains("state_init"), "{err}");
    let mut cfg = smoke();
    let err = cfg
        .set_all(&[("train.state_init", "noise"), ("train.state_noise", "-1")])
        .unwrap_err();
    assert!(err.to_string().contains("train.state_noise"), "{err}");
}

/// Text of words drawn at random from four: inside a word every byte is determined by the
/// ones before it, so a model that learns the words needs far fewer bits per byte than the
/// bytes' unigram entropy.
fn word_text(n_words: usize, seed: u64) -> String {
    let words = ["alpha ", "beta ", "gamma ", "delta "];
    let mut rng = Rng::new(seed, 0);
    (0..n_words).map(|_| words[rng.below(4)]).collect()
}

fn unigram_bits(text: &str) -> f64 {
    let mut counts = [0usize; 256];
    text.bytes().for_each(|b| counts[b as usize] += 1);
    let n = text.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[test]
fn a_byte_level_text_corpus_is_learned_below_its_unigram_entropy() {
    let dir = std::env::temp_dir().join(format!("labbook-models-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = word_text(4000, 1);
    std::fs::write(dir.join("corpus.txt"), &text).unwrap();
    let toml = format!(
        r#"
[model]
kind = "mamba"
d_model = 32
n_layers = 2
d_state = 8

[task]
kind = "text"
path = "{}/corpus.txt"
seq_len = 32
eval_samples = 16

[train]
steps = 150
batch_size = 8
lr = 3e-3
warmup_steps = 10
eval_every = 150
seed = 0
backend = "cpu"
"#,
        dir.display()
    );
    let cfg = RunConfig::parse(&toml, "text.toml").unwrap();
    let (summary, _) = train_plain(&cfg);
    let bpb = metric(&summary.final_metrics, "eval/bpb@32");
    let entropy = unigram_bits(&text);
    eprintln!("eval/bpb@32 {bpb:.3} after 150 steps; unigram entropy {entropy:.3} bits");
    // Words of 5–6 bytes with 2 bits of choice each: about 0.4 bits per byte is reachable.
    assert!(entropy > 2.5, "unigram entropy {entropy}");
    assert!(
        bpb < 0.5 * entropy,
        "eval/bpb {bpb} is not well below the unigram entropy {entropy}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_data_is_refused_before_training_with_the_file_named() {
    let dir = std::env::temp_dir().join(format!("labbook-models-badtok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 100 u16 tokens, one of them (offset 40) at the vocabulary size.
    let ids: Vec<u16> = (0..100)
        .map(|i| if i == 40 { 64 } else { i % 64 })
        .collect();
    let bytes: Vec<u8> = ids.iter().flat_map(|t| t.to_le_bytes()).collect();
    std::fs::write(dir.join("train.bin"), bytes).unwrap();
    let toml = format!(
        r#"
[model]
kind = "mamba"
d_model = 16
n_layers = 1

[task]
kind = "tokens"
path = "{}/train.bin"
dtype = "u16"
vocab_size = 64
seq_len = 8

[train]
steps = 2
batch_size = 2
lr = 1e-3
backend = "cpu"
"#,
        dir.display()
    );
    let cfg = RunConfig::parse(&toml, "tokens.toml").unwrap();
    let cancel = AtomicBool::new(false);
    let mut rec = Recorder::default();
    let opts = TrainOptions {
        checkpoint_dir: None,
        cancel: &cancel,
        resume_from: None,
    };
    let e = train(&cfg, opts, &mut rec).unwrap_err();
    assert!(matches!(e, TrainError::Data(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("train.bin: token 64 at offset 40"), "{msg}");
    assert!(rec.steps.is_empty(), "trained before checking the data");
    std::fs::remove_dir_all(&dir).unwrap();
}
