//! BM25 ranking and snippets computed from a candidate's text, the same formula as FTS5's
//! `bm25()` (k1 = 1.2, b = 0.75, weighted term frequency, IDF clamped at 1e-6).
//!
//! Why not FTS5's own `bm25()`: it counts every document that contains each query word
//! before scoring the first row, which made a query with a common word slow over a large
//! notebook (docs/performance.md, "Search: how the 5 ms target was reached").
//! Here the document frequencies come from a bounded estimate (see `super::doc_freq`).
use super::text::{Term, fold, for_each_token, token_spans};

/// Column weights, in the FTS table's column order: title, body, comments, authors, tags.
pub const WEIGHTS: [f64; 5] = [10.0, 1.0, 1.0, 4.0, 3.0];
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// Whole-index statistics that BM25 needs.
#[derive(Debug, Clone, Copy)]
pub struct Corpus {
    pub rows: f64,
    pub avg_tokens: f64,
}

pub struct Bm25<'a> {
    terms: &'a [Term],
    idf: Vec<f64>,
    avg_tokens: f64,
}

impl<'a> Bm25<'a> {
    /// `doc_freq[i]`: how many documents contain `terms[i]`.
    pub fn new(terms: &'a [Term], doc_freq: &[f64], corpus: Corpus) -> Self {
        let idf = doc_freq
            .iter()
            .map(|&n| {
                let idf = ((corpus.rows - n + 0.5) / (n + 0.5)).ln();
                if idf > 0.0 { idf } else { 1e-6 }
            })
            .collect();
        Bm25 {
            terms,
            idf,
            avg_tokens: corpus.avg_tokens.max(1.0),
        }
    }

    /// FTS5's sign convention: more negative is a better match.
    pub fn score(&self, columns: &[&str; 5]) -> f64 {
        let mut freq = vec![0.0; self.terms.len()];
        let mut tokens = 0usize;
        for (text, weight) in columns.iter().zip(WEIGHTS) {
            for_each_token(text, |s, e, ascii| {
                tokens += 1;
                if let Some(i) = matching_term(self.terms, &text[s..e], ascii) {
                    freq[i] += weight;
                }
            });
        }
        let norm = K1 * (1.0 - B + B * tokens as f64 / self.avg_tokens);
        let score: f64 = freq
            .iter()
            .zip(&self.idf)
            .map(|(f, idf)| idf * f * (K1 + 1.0) / (f + norm))
            .sum();
        -score
    }
}

/// The first term `token` matches, comparing folded forms without allocating for ASCII.
#[inline]
fn matching_term(terms: &[Term], token: &str, ascii: bool) -> Option<usize> {
    if ascii {
        let tok = token.as_bytes();
        terms.iter().position(|t| {
            let w = t.word.as_bytes();
            let n = w.len();
            // Most tokens differ in length or first letter: reject those before comparing.
            let len_ok = if t.prefix {
                tok.len() >= n
            } else {
                tok.len() == n
            };
            len_ok
                && (n == 0 || tok[0].to_ascii_lowercase() == w[0])
                && tok[..n].eq_ignore_ascii_case(w)
        })
    } else {
        let folded = fold(token);
        terms.iter().position(|t| t.matches(&folded))
    }
}

/// A token's byte range and whether it is a query word.
type Token = (usize, usize, bool);

/// A window of at most `width` tokens from the column with the most query words, with the
/// words in `[brackets]` and `…` where text was cut (like FTS5's `snippet()`).
pub fn snippet(columns: &[&str; 5], terms: &[Term], width: usize) -> String {
    let width = width.max(1);
    let mut best: Option<(usize, Vec<Token>)> = None;
    let mut best_key = (0usize, 0usize);
    // Body and comments before the title on a tie: the title is shown next to the snippet.
    for col in [1, 2, 0, 3, 4] {
        let text = columns[col];
        let toks: Vec<Token> = token_spans(text)
            .map(|(s, e)| {
                (
                    s,
                    e,
                    matching_term(terms, &text[s..e], text[s..e].is_ascii()).is_some(),
                )
            })
            .collect();
        let key = window_key(text, &toks, terms, 0, toks.len());
        if best.is_none() || key > best_key {
            best_key = key;
            best = Some((col, toks));
        }
    }
    let Some((col, toks)) = best else {
        return String::new();
    };
    if best_key.1 == 0 {
        // No word found (a folding corner case): show the body's start, else the title's.
        let fallback = [1usize, 0]
            .into_iter()
            .find(|&c| token_spans(columns[c]).next().is_some())
            .unwrap_or(col);
        let toks: Vec<_> = token_spans(columns[fallback])
            .map(|(s, e)| (s, e, false))
            .collect();
        return render(columns[fallback], &toks, 0, width.min(toks.len()));
    }
    let text = columns[col];
    let mut start = 0;
    let mut key = (0, 0);
    for (i, t) in toks.iter().enumerate() {
        if !t.2 {
            continue;
        }
        // Start a little before a hit so it reads in context.
        let s = i.saturating_sub(2).min(toks.len().saturating_sub(width));
        let k = window_key(text, &toks, terms, s, (s + width).min(toks.len()));
        if k > key {
            key = k;
            start = s;
        }
    }
    render(text, &toks, start, (start + width).min(toks.len()))
}

/// (distinct terms, hits) within tokens `from..to`.
fn window_key(
    text: &str,
    toks: &[Token],
    terms: &[Term],
    from: usize,
    to: usize,
) -> (usize, usize) {
    let mut seen = vec![false; terms.len()];
    let mut hits = 0;
    for &(s, e, hit) in &toks[from..to] {
        if hit {
            hits += 1;
            if let Some(i) = matching_term(terms, &text[s..e], text[s..e].is_ascii()) {
                seen[i] = true;
            }
        }
    }
    (seen.iter().filter(|&&b| b).count(), hits)
}

fn render(text: &str, toks: &[Token], from: usize, to: usize) -> String {
    if from >= to {
        return String::new();
    }
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    let mut pos = toks[from].0;
    for &(s, e, hit) in &toks[from..to] {
        out.push_str(&text[pos..s]);
        if hit {
            out.push('[');
            out.push_str(&text[s..e]);
            out.push(']');
        } else {
            out.push_str(&text[s..e]);
        }
        pos = e;
    }
    if to < toks.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::text::parse_query;
    use super::*;

    #[test]
    fn snippet_marks_words_and_cuts_long_text() {
        let terms = parse_query("selective scan*");
        let body = "We test whether the selective scanning kernel keeps up with attention on long \
                    sequences of tokens";
        let cols = ["Other title", body, "", "", ""];
        assert_eq!(
            snippet(&cols, &terms, 6),
            "…whether the [selective] [scanning] kernel keeps…"
        );
        // The column with more distinct words wins; a short column is not cut.
        let cols = ["Selective scan", "only selective here", "", "", ""];
        assert_eq!(snippet(&cols, &terms, 10), "[Selective] [scan]");
        // Unicode and punctuation between words survive; the snippet starts at a word.
        let cols = ["", "« Mámba » — sélective", "", "", ""];
        assert_eq!(
            snippet(&cols, &parse_query("mamba"), 10),
            "[Mámba] » — sélective"
        );
    }

    #[test]
    fn title_weight_and_rarity_order_scores() {
        let terms = parse_query("mamba kernel");
        let corpus = Corpus {
            rows: 1000.0,
            avg_tokens: 8.0,
        };
        // "kernel" is rare, "mamba" is in most documents.
        let bm = Bm25::new(&terms, &[900.0, 10.0], corpus);
        let in_title = bm.score(&["mamba kernel", "a b c d e f", "", "", ""]);
        let in_body = bm.score(&["a b", "mamba kernel c d e f", "", "", ""]);
        let common_only = bm.score(&["mamba mamba", "a b c d e f", "", "", ""]);
        assert!(in_title < in_body, "{in_title} < {in_body}");
        assert!(in_body < common_only, "{in_body} < {common_only}");
        assert!(common_only < 0.0);
    }
}
