//! Generated training tasks, deterministic by seed (no downloads).
//!
//! * `selective-copying`: `n_memorize` data tokens scattered in a noisy region of length
//!   `seq_len`, followed by `n_memorize` marker tokens; at the i-th marker the model must emit
//!   the i-th data token. Token 0 is noise, `vocab − 1` is the marker, the rest are data.
//! * `induction-heads`: random tokens; a trigger token (`vocab − 1`) appears once followed by a
//!   target token, and again as the last token; the model must predict the target there.
//! * `char-lm`: next-character prediction on the bundled Shakespeare excerpt (90% train,
//!   10% validation).
//! * `text`, `tokens`: a language model on the user's own files ([`crate::data`]).
use serde::{Deserialize, Serialize};

use crate::data::{Corpus, DataError, Dtype, Source, Tokenizer};

/// Which generated task a run trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Recall `n_memorize` data tokens scattered in noise, after the marker tokens.
    SelectiveCopying,
    /// Predict the token that followed the trigger's first occurrence.
    InductionHeads,
    /// Character-level LM on the bundled Shakespeare excerpt.
    CharLm,
    /// A language model on the user's text files (`path`, `tokenizer`).
    Text,
    /// A language model on pre-tokenized token files (`path`, `dtype`, `vocab_size`).
    Tokens,
}

impl TaskKind {
    /// Whether the task reads the user's files.
    pub fn reads_files(self) -> bool {
        matches!(self, TaskKind::Text | TaskKind::Tokens)
    }
}

impl std::fmt::Display for TaskKind {
    /// The name a config gives it (`task.kind`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskKind::SelectiveCopying => "selective-copying",
            TaskKind::InductionHeads => "induction-heads",
            TaskKind::CharLm => "char-lm",
            TaskKind::Text => "text",
            TaskKind::Tokens => "tokens",
        })
    }
}

/// `[task]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    /// Which task.
    pub kind: TaskKind,
    /// Vocabulary size (16 for the synthetic tasks; ≥ the corpus alphabet for char-lm;
    /// required for `tokens`; for `text`, 0 or absent means what the tokenizer needs).
    #[serde(default)]
    pub vocab_size: usize,
    /// Training sequence length (for selective copying: the noisy region before the markers).
    pub seq_len: usize,
    /// Sequence lengths evaluated; default `[seq_len]`.
    #[serde(default)]
    pub eval_seq_lens: Vec<usize>,
    /// Selective copying: number of data tokens to memorise.
    #[serde(default = "default_n_memorize")]
    pub n_memorize: usize,
    /// Sequences per evaluation length.
    #[serde(default = "default_eval_samples")]
    pub eval_samples: usize,
    /// `text` / `tokens`: the training data — a file, a directory (its files, sorted) or a
    /// glob; `~` and `$VAR` are expanded, relative paths start at the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Held-out data; without it, the last `val_fraction` of `path`'s data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_path: Option<String>,
    /// The held-out share of `path` when there is no `val_path`.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// `text`: `bytes` (vocabulary 256, the default) or `chars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<Tokenizer>,
    /// `tokens`: `u16` or `u32`, little-endian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<Dtype>,
}

fn default_val_fraction() -> f64 {
    0.05
}

impl TaskSection {
    /// The data files this section names (`text` and `tokens` only).
    pub fn source(&self) -> Option<Source<'_>> {
        let path = self.path.as_deref()?;
        Some(Source {
            path,
            val_path: self.val_path.as_deref(),
            val_fraction: self.val_fraction,
            tokenizer: (self.kind == TaskKind::Text).then(|| self.tokenizer.unwrap_or_default()),
            dtype: self.dtype,
            vocab_size: self.vocab_size,
        })
    }
}

fn default_n_memorize() -> usize {
    16
}

fn default_eval_samples() -> usize {
    64
}

/// SplitMix64: tiny, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed and a stream number (so train and eval data never collide).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }
}

/// A batch of token sequences with per-position targets and loss weights (row-major
/// `[batch, len]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Number of sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub len: usize,
    /// Input token ids.
    pub inputs: Vec<i64>,
    /// Target token ids (ignored where the weight is 0).
    pub targets: Vec<i64>,
    /// 1.0 where the position is scored, else 0.0.
    pub weights: Vec<f32>,
}

impl Batch {
    /// The sequences `[from, from + n)` as a batch of their own.
    pub fn rows(&self, from: usize, n: usize) -> Batch {
        assert!(
            from + n <= self.batch,
            "rows {from}..{} of {}",
            from + n,
            self.batch
        );
        let span = from * self.len..(from + n) * self.len;
        Batch {
            batch: n,
            len: self.len,
            inputs: self.inputs[span.clone()].to_vec(),
            targets: self.targets[span.clone()].to_vec(),
            weights: self.weights[span].to_vec(),
        }
    }

    /// The scored positions' total weight.
    pub fn weight(&self) -> f64 {
        self.weights.iter().map(|&w| w as f64).sum()
    }
}

/// The bundled character corpus.
#[derive(Debug, Clone)]
pub struct CharCorpus {
    alphabet: Vec<char>,
    ids: Vec<i64>,
    split: usize,
}

/// The bundled text: an excerpt of Shakespeare's *Coriolanus* (public domain); see
/// `models/data/README.md` for provenance.
pub const SHAKESPEARE: &str = include_str!("../data/shakespeare.txt");

impl CharCorpus {
    /// The bundled Shakespeare excerpt.
    pub fn bundled() -> Self {
        Self::from_text(SHAKESPEARE)
    }

    /// Any text: the alphabet is its sorted set of characters.
    pub fn from_text(text: &str) -> Self {
        let mut alphabet: Vec<char> = text.chars().collect();
        alphabet.sort_unstable();
        alphabet.dedup();
        let ids = text
            .chars()
            .map(|c| alphabet.binary_search(&c).expect("char in alphabet") as i64)
            .collect::<Vec<_>>();
        let split = ids.len() * 9 / 10;
        CharCorpus {
            alphabet,
            ids,
            split,
        }
    }

    /// Distinct characters.
    pub fn vocab_size(&self) -> usize {
        self.alphabet.len()
    }

    /// Characters in the validation split.
    pub fn valid_len(&self) -> usize {
        self.ids.len() - self.split
    }

    /// Characters in the training split.
    pub fn train_len(&self) -> usize {
        self.split
    }

    /// Decodes ids back to text (unknown ids become `?`).
    pub fn decode(&self, ids: &[i64]) -> String {
        ids.iter()
            .map(|&i| self.alphabet.get(i as usize).copied().unwrap_or('?'))
            .collect()
    }
}

/// A task generator built from `[task]`.
#[derive(Debug, Clone)]
pub enum Task {
    /// See the module docs.
    SelectiveCopying {
        /// Vocabulary size.
        vocab: usize,
        /// Data tokens to recall.
        n_memorize: usize,
    },
    /// See the module docs.
    InductionHeads {
        /// Vocabulary size.
        vocab: usize,
    },
    /// See the module docs.
    CharLm(CharCorpus),
    /// The user's text or token files.
    Files(Corpus),
}

impl Task {
    /// The generator for a validated `[task]` section; `text` and `tokens` open and check
    /// their files here (every configured length must fit in both splits).
    pub fn open(t: &TaskSection, eval_lens: &[usize]) -> Result<Task, DataError> {
        let Some(src) = t.source().filter(|_| t.kind.reads_files()) else {
            return Ok(Self::from_config(t));
        };
        let corpus = Corpus::open(src)?;
        corpus.check_len("task.seq_len", t.seq_len)?;
        for &len in eval_lens {
            corpus.check_len("task.eval_seq_lens", len)?;
        }
        Ok(Task::Files(corpus))
    }

    /// The vocabulary the model needs: the configured one, or the data's for text files.
    pub fn vocab_size(&self, configured: usize) -> usize {
        match self {
            Task::Files(c) => c.vocab_size(),
            _ => configured,
        }
    }

    /// The generator for a validated `[task]` section of a generated task.
    ///
    /// # Panics
    /// For `text` and `tokens`, which need [`Task::open`].
    pub fn from_config(t: &TaskSection) -> Task {
        match t.kind {
            TaskKind::SelectiveCopying => Task::SelectiveCopying {
                vocab: t.vocab_size,
                n_memorize: t.n_memorize,
            },
            TaskKind::InductionHeads => Task::InductionHeads {
                vocab: t.vocab_size,
            },
            TaskKind::CharLm => Task::CharLm(CharCorpus::bundled()),
            TaskKind::Text | TaskKind::Tokens => panic!("{} data is opened by Task::open", t.kind),
        }
    }

    /// Total input length for a configured length (selective copying appends the markers).
    pub fn input_len(&self, len: usize) -> usize {
        match self {
            Task::SelectiveCopying { n_memorize, .. } => len + n_memorize,
            _ => len,
        }
    }

    /// `batch` sequences for the configured length `len`; `valid` picks char-lm's held-out split.
    pub fn sample(&self, rng: &mut Rng, batch: usize, len: usize, valid: bool) -> Batch {
        let total = self.input_len(len);
        let mut out = Batch {
            batch,
            len: total,
            inputs: Vec::with_capacity(batch * total),
            targets: Vec::with_capacity(batch * total),
            weights: Vec::with_capacity(batch * total),
        };
        for _ in 0..batch {
            match self {
                Task::SelectiveCopying { vocab, n_memorize } => {
                    let (noise, marker, m) = (0i64, *vocab as i64 - 1, *n_memorize);
                    let mut seq = vec![noise; len];
                    // m distinct positions, in order (partial Fisher–Yates).
                    let mut pos: Vec<usize> = (0..len).collect();
                    for i in 0..m {
                        let j = i + rng.below(len - i);
                        pos.swap(i, j);
                    }
                    let mut chosen = pos[..m].to_vec();
                    chosen.sort_unstable();
                    let data: Vec<i64> = (0..m).map(|_| 1 + rng.below(vocab - 2) as i64).collect();
                    for (&p, &tok) in chosen.iter().zip(&data) {
                        seq[p] = tok;
                    }
                    out.inputs.extend_from_slice(&seq);
                    out.inputs.extend(std::iter::repeat_n(marker, m));
                    out.targets.extend(std::iter::repeat_n(0, len));
                    out.targets.extend_from_slice(&data);
                    out.weights.extend(std::iter::repeat_n(0.0, len));
                    out.weights.extend(std::iter::repeat_n(1.0, m));
                }
                Task::InductionHeads { vocab } => {
                    let trigger = *vocab as i64 - 1;
                    let mut seq: Vec<i64> = (0..len).map(|_| rng.below(vocab - 1) as i64).collect();
                    let p = rng.below(len - 2); // trigger at p, target at p + 1 ≤ len − 2
                    let target = seq[p + 1];
                    seq[p] = trigger;
                    seq[len - 1] = trigger;
                    out.inputs.extend_from_slice(&seq);
                    out.targets.extend(std::iter::repeat_n(0, len - 1));
                    out.targets.push(target);
                    out.weights.extend(std::iter::repeat_n(0.0, len - 1));
                    out.weights.push(1.0);
                }
                Task::CharLm(corpus) => {
                    let (lo, hi) = if valid {
                        (corpus.split, corpus.ids.len())
                    } else {
                        (0, corpus.split)
                    };
                    let start = lo + rng.below(hi - lo - len);
                    out.inputs
                        .extend_from_slice(&corpus.ids[start..start + len]);
                    out.targets
                        .extend_from_slice(&corpus.ids[start + 1..start + len + 1]);
                    out.weights.extend(std::iter::repeat_n(1.0, len));
                }
                Task::Files(corpus) => {
                    corpus.window(rng, len, valid, &mut out.inputs, &mut out.targets);
                    out.weights.extend(std::iter::repeat_n(1.0, len));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selective_copying_targets_are_the_data_tokens_in_order() {
        let task = Task::SelectiveCopying {
            vocab: 16,
            n_memorize: 4,
        };
        let b = task.sample(&mut Rng::new(3, 0), 5, 20, false);
        assert_eq!(b.len, 24);
        for s in 0..5 {
            let row = &b.inputs[s * 24..(s + 1) * 24];
            let data: Vec<i64> = row[..20].iter().copied().filter(|&t| t != 0).collect();
            assert_eq!(data.len(), 4);
            assert!(row[20..].iter().all(|&t| t == 15));
            assert_eq!(&b.targets[s * 24 + 20..(s + 1) * 24], &data[..]);
            assert_eq!(b.weights[s * 24..(s + 1) * 24].iter().sum::<f32>(), 4.0);
        }
    }

    #[test]
    fn induction_target_follows_first_trigger() {
        let task = Task::InductionHeads { vocab: 16 };
        let b = task.sample(&mut Rng::new(1, 0), 8, 32, false);
        for s in 0..8 {
            let row = &b.inputs[s * 32..(s + 1) * 32];
            let triggers: Vec<usize> = (0..32).filter(|&i| row[i] == 15).collect();
            assert_eq!(triggers.len(), 2, "{row:?}");
            assert_eq!(triggers[1], 31);
            assert_eq!(b.targets[s * 32 + 31], row[triggers[0] + 1]);
        }
    }

    #[test]
    fn generation_is_deterministic_by_seed() {
        let task = Task::InductionHeads { vocab: 16 };
        let a = task.sample(&mut Rng::new(7, 1), 4, 16, false);
        let b = task.sample(&mut Rng::new(7, 1), 4, 16, false);
        let c = task.sample(&mut Rng::new(8, 1), 4, 16, false);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn char_corpus_round_trips_and_shifts_targets() {
        let corpus = CharCorpus::bundled();
        assert!(corpus.train_len() > 10_000);
        let task = Task::CharLm(corpus.clone());
        let b = task.sample(&mut Rng::new(0, 0), 2, 50, true);
        assert_eq!(&b.inputs[1..50], &b.targets[..49]);
        assert!(SHAKESPEARE.contains(&corpus.decode(&b.inputs[..50])));
    }
}
