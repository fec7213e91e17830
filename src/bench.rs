//! `labbook bench store`: throughput of the store on a fresh temporary notebook.
//! Numbers and method are recorded in docs/performance.md.
use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::model::{Kind, NewItem};
use crate::store::{MetricPoint, NewRun, Store};

#[derive(Debug, Clone)]
pub struct StoreBench {
    pub items: usize,
    pub metrics: usize,
    pub batch: usize,
    pub searches: usize,
}

#[derive(Debug, Serialize)]
pub struct StoreBenchReport {
    pub items: usize,
    pub items_per_s: f64,
    pub metric_points: usize,
    pub metric_batch: usize,
    pub metric_points_per_s: f64,
    pub searches: usize,
    pub search_p50_ms: f64,
    pub search_p95_ms: f64,
    pub search_p99_ms: f64,
    /// The same queries typed into the TUI filter (last word as a prefix).
    pub prefix_search_p50_ms: f64,
    pub prefix_search_p95_ms: f64,
    pub prefix_search_p99_ms: f64,
    pub db_bytes: u64,
}

/// Deterministic pseudo-random text so benchmark runs are comparable; shared by
/// `bench store` and `bench tui`.
pub struct Words {
    state: u64,
    vocab: Vec<String>,
    /// Cumulative Zipf weights; `None` picks words uniformly.
    cumulative: Option<Vec<f64>>,
}

/// Words of the team's domain; the most frequent words of the Zipf vocabulary.
const DOMAIN: &[&str] = &[
    "mamba",
    "selective",
    "scan",
    "state",
    "space",
    "attention",
    "hybrid",
    "kernel",
    "chunked",
    "softmax",
    "convolution",
    "induction",
    "copying",
    "transformer",
    "linear",
    "recurrent",
    "gating",
    "norm",
    "rope",
    "extrapolation",
    "benchmark",
    "cuda",
    "memory",
    "throughput",
    "ablation",
    "sweep",
    "baseline",
    "perplexity",
    "tokenizer",
    "dataset",
    "layer",
    "depth",
];
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "da", "fe", "gu", "hi", "jo", "pa", "qu",
    "be", "co", "wy", "xa",
];
const VOCAB_SIZE: usize = 5000;

impl Words {
    /// Word frequencies follow Zipf's law over a 5,000-word vocabulary, like real notes:
    /// a few words are in most documents, most words in few. (A tiny vocabulary makes
    /// every query match every document, which no real notebook does.)
    pub fn zipf(seed: u64) -> Words {
        let mut vocab: Vec<String> = DOMAIN.iter().map(|w| w.to_string()).collect();
        let n = SYLLABLES.len();
        let mut i = 0;
        while vocab.len() < VOCAB_SIZE {
            vocab.push(format!(
                "{}{}{}",
                SYLLABLES[i % n],
                SYLLABLES[(i / n) % n],
                SYLLABLES[(i / (n * n)) % n]
            ));
            i += 1;
        }
        let mut total = 0.0;
        let cumulative = (1..=vocab.len())
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(1.07);
                total
            })
            .collect();
        Words {
            state: seed,
            vocab,
            cumulative: Some(cumulative),
        }
    }
    /// The 32 domain words, picked uniformly (every word is in most documents).
    pub fn domain(seed: u64) -> Words {
        Words {
            state: seed,
            vocab: DOMAIN.iter().map(|w| w.to_string()).collect(),
            cumulative: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
    pub fn word(&mut self) -> &str {
        let r = self.next_u64();
        let i = match &self.cumulative {
            None => (r % self.vocab.len() as u64) as usize,
            Some(cumulative) => {
                let total = *cumulative.last().expect("non-empty vocabulary");
                let u = (r >> 11) as f64 / (1u64 << 53) as f64 * total;
                cumulative
                    .partition_point(|&c| c < u)
                    .min(self.vocab.len() - 1)
            }
        };
        &self.vocab[i]
    }

    pub fn sentence(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| self.word().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub fn store(cfg: &StoreBench, progress: impl Fn(&str)) -> Result<StoreBenchReport> {
    let dir = tempfile::tempdir().map_err(|e| crate::Error::io(std::env::temp_dir(), e))?;
    let path = dir.path().join("bench.db");
    let mut store = Store::open(&path, "bench")?;
    let mut words = Words::zipf(0x9e37_79b9_7f4a_7c15);

    progress(&format!("inserting {} items…", cfg.items));
    let t = Instant::now();
    for chunk in (0..cfg.items).collect::<Vec<_>>().chunks(1000) {
        let news: Vec<NewItem> = chunk
            .iter()
            .map(|i| {
                let mut n = NewItem::new(Kind::ALL[i % 4], words.sentence(6));
                n.body = words.sentence(40);
                n
            })
            .collect();
        store.write(|tx, ctx| {
            for n in &news {
                crate::store::insert_item(tx, ctx, n)?;
            }
            Ok(())
        })?;
    }
    let items_per_s = cfg.items as f64 / t.elapsed().as_secs_f64();

    progress(&format!("inserting {} metric points…", cfg.metrics));
    let run = store.create_run(&NewRun {
        config: "bench".into(),
        ..Default::default()
    })?;
    let keys = ["loss", "accuracy", "lr", "grad_norm"];
    let t = Instant::now();
    let mut step = 0i64;
    let mut done = 0;
    while done < cfg.metrics {
        let n = cfg.batch.min(cfg.metrics - done);
        let points: Vec<MetricPoint> = (0..n)
            .map(|j| {
                let k = keys[j % keys.len()];
                if j % keys.len() == 0 {
                    step += 1;
                }
                MetricPoint {
                    step,
                    key: k.to_string(),
                    value: 1.0 / step as f64,
                    wall_time: step as f64 * 0.01,
                }
            })
            .collect();
        store.append_metrics(run, &points, Some(step))?;
        done += n;
    }
    let metric_points_per_s = cfg.metrics as f64 / t.elapsed().as_secs_f64();

    progress(&format!("timing {} searches…", cfg.searches));
    let queries: Vec<String> = (0..cfg.searches)
        .map(|_| {
            let first = words.word().to_string();
            format!("{first} {}", words.word())
        })
        .collect();
    let time_queries = |as_you_type: bool| -> Result<Vec<f64>> {
        let mut lat = Vec::with_capacity(queries.len());
        for q in &queries {
            let q = if as_you_type {
                crate::store::as_you_type(q)
            } else {
                q.clone()
            };
            let t = Instant::now();
            let hits = store.search(&q, None, 20)?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(hits);
        }
        Ok(lat)
    };
    let mut whole = time_queries(false)?;
    let mut prefix = time_queries(true)?;
    drop(store);
    let db_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(StoreBenchReport {
        items: cfg.items,
        items_per_s,
        metric_points: cfg.metrics,
        metric_batch: cfg.batch,
        metric_points_per_s,
        searches: cfg.searches,
        search_p50_ms: percentile(&mut whole, 0.50),
        search_p95_ms: percentile(&mut whole, 0.95),
        search_p99_ms: percentile(&mut whole, 0.99),
        prefix_search_p50_ms: percentile(&mut prefix, 0.50),
        prefix_search_p95_ms: percentile(&mut prefix, 0.95),
        prefix_search_p99_ms: percentile(&mut prefix, 0.99),
        db_bytes,
    })
}

/// The `p` quantile (0..=1) of `v`, nearest-rank; 0 for no samples. Sorts `v`.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0)
}
