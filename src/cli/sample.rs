use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use labbook::model::RunId;
use labbook_models::data::Tokenizer;
use labbook_models::generate::{Generator, Sampling, draw};
use labbook_models::tasks::{CharCorpus, Rng, TaskKind};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// The run whose weights generate.
    #[arg(value_name = "R-n")]
    run: RunId,
    /// Text to continue (token ids separated by spaces for token and synthetic-task runs).
    #[arg(long, default_value = "")]
    prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Softmax temperature; 0 picks the most likely token every time.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Draw only among the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 0, value_name = "K")]
    top_k: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A checkpoint directory other than the run's own (`runs/R-n/`).
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
}

/// How prompt and output map to token ids.
enum Codec {
    Bytes,
    Chars(Vec<char>),
    Ids,
}

impl Codec {
    fn encode(&self, prompt: &str) -> Result<Vec<usize>> {
        Ok(match self {
            Codec::Bytes => prompt.bytes().map(usize::from).collect(),
            Codec::Chars(alphabet) => prompt
                .chars()
                .map(|c| {
                    alphabet.iter().position(|&a| a == c).ok_or_else(|| {
                        anyhow::anyhow!("--prompt: {c:?} is not in the run's alphabet")
                    })
                })
                .collect::<Result<_>>()?,
            Codec::Ids => prompt
                .split_whitespace()
                .map(|t| {
                    t.parse()
                        .map_err(|_| anyhow::anyhow!("--prompt: `{t}` is not a token id"))
                })
                .collect::<Result<_>>()?,
        })
    }

    fn write(&self, out: &mut impl Write, token: usize) -> std::io::Result<()> {
        match self {
            Codec::Bytes => out.write_all(&[token as u8]),
            Codec::Chars(a) => write!(out, "{}", a.get(token).copied().unwrap_or('?')),
            Codec::Ids => write!(out, "{token} "),
        }
    }
}

/// `labbook sample R-n`: continues a prompt with a run's weights, streaming tokens.
pub fn cmd_sample(env: &Env, a: Args) -> Result<()> {
    let (cfg, dir) = super::export_model::trained_run(env, a.run, a.checkpoint)?;
    let trained = labbook_models::checkpoint::load_trained(&cfg, &dir)?;
    let codec = match (cfg.task.kind, cfg.task.tokenizer.unwrap_or_default()) {
        (TaskKind::Text, Tokenizer::Bytes) => Codec::Bytes,
        (TaskKind::Text, Tokenizer::Chars) => match trained.alphabet {
            Some(alphabet) => Codec::Chars(alphabet),
            None => bail!("{}: the checkpoint has no alphabet", dir.display()),
        },
        (TaskKind::CharLm, _) => Codec::Chars(bundled_alphabet()),
        _ => Codec::Ids,
    };
    let vocab = trained.model.embedding.weight.val().dims()[0];
    let mut prompt = codec.encode(&a.prompt)?;
    if let Some(bad) = prompt.iter().find(|&&t| t >= vocab) {
        bail!("--prompt: token {bad} is not below the run's vocabulary ({vocab})");
    }
    if prompt.is_empty() {
        prompt.push(0); // byte 0 separates documents in text runs: a start of text
    }
    let sampling = Sampling {
        temperature: a.temperature.max(0.0),
        top_k: a.top_k,
    };
    let mut generator = Generator::new(&trained.model);
    let mut rng = Rng::new(a.seed, 0x5A4D_9E00);
    let mut logits = Vec::new();
    for &t in &prompt {
        logits = generator.step(t);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for _ in 0..a.tokens {
        let next = draw(&logits, sampling, &mut rng);
        codec.write(&mut out, next)?;
        out.flush()?;
        logits = generator.step(next);
    }
    writeln!(out)?;
    Ok(())
}

fn bundled_alphabet() -> Vec<char> {
    let corpus = CharCorpus::bundled();
    let ids: Vec<i64> = (0..corpus.vocab_size() as i64).collect();
    corpus.decode(&ids).chars().collect()
}
