//! Ranked full-text search over titles, bodies, comments, paper authors and tags.
//!
//! FTS5 finds the matching items; ranking is BM25 with FTS5's formula, computed in
//! [`rank`] from each candidate's text. Two bounds keep every query fast however common
//! its words are (numbers in docs/performance.md):
//! * only the newest [`CANDIDATES`] matches are ranked (all of them when fewer match), so a
//!   query that matches most of the notebook ranks its most recent items;
//! * document frequencies come from the newest [`DF_SAMPLE`] matches of each word: exact
//!   for words in fewer documents, estimated from their density otherwise.
mod rank;
mod substring;
mod text;

use rusqlite::OptionalExtension;
use serde::Serialize;

use super::Store;
use crate::error::Result;
use crate::model::{ItemId, Kind};
pub use text::as_you_type;
use text::{Term, fts_expression, parse_query};

/// How many of the newest matches are ranked.
pub const CANDIDATES: usize = 400;
/// Matches sampled per word to estimate its document frequency.
pub const DF_SAMPLE: usize = 128;
const SNIPPET_TOKENS: usize = 10;

struct Candidate {
    kind: String,
    num: i64,
    status: String,
    columns: [String; 5],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub id: ItemId,
    pub title: String,
    pub status: String,
    /// Matching text with hits in `[brackets]`.
    pub snippet: String,
    /// BM25 score; lower (more negative) is better, as FTS5's `bm25()`.
    pub score: f64,
}

impl Store {
    /// Best matches first; archived items are left out. Every word must match as a whole
    /// word (a word ending in `*` as a prefix); when that leaves fewer than `limit` hits, the
    /// last word is also matched as a prefix and those hits follow (so `hybrid` finds
    /// "hybrids" after the items that say "hybrid"). The CLI and the TUI's filter both search
    /// this way. Queries with Chinese, Japanese, Korean or Thai text or with emoji match as
    /// substrings instead (see [`substring`]).
    pub fn search(&self, query: &str, kind: Option<Kind>, limit: usize) -> Result<Vec<SearchHit>> {
        if substring::wanted(query) {
            return self.search_substrings(query, kind, limit);
        }
        let mut hits = self.search_within(query, kind, limit, CANDIDATES.max(limit))?;
        let trimmed = query.trim_end();
        let widened = as_you_type(trimmed);
        if hits.len() < limit && widened != trimmed {
            let more = self.search_within(&widened, kind, limit, CANDIDATES.max(limit))?;
            for hit in more {
                if hits.len() == limit {
                    break;
                }
                if !hits.iter().any(|h| h.id == hit.id) {
                    hits.push(hit);
                }
            }
        }
        Ok(hits)
    }

    /// [`Self::search`] for queries the word index cannot answer: see [`substring`].
    fn search_substrings(
        &self,
        query: &str,
        kind: Option<Kind>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let pieces = substring::pieces(query);
        if pieces.is_empty() {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(&substring::sql(pieces.len()))?;
        let mut params: Vec<Box<dyn rusqlite::ToSql>> = vec![
            Box::new(kind.map(|k| k.as_str().to_string())),
            Box::new(limit as i64),
        ];
        params.extend(
            pieces
                .iter()
                .map(|p| Box::new(p.clone()) as Box<dyn rusqlite::ToSql>),
        );
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut hits = Vec::new();
        while let Some(r) = rows.next()? {
            let text = |i: usize| -> Result<String> { Ok(r.get::<_, String>(i)?) };
            let columns = [text(3)?, text(4)?, text(5)?, text(6)?, text(7)?];
            let cols = columns.each_ref().map(String::as_str);
            let kind: String = r.get(0)?;
            hits.push(SearchHit {
                id: ItemId {
                    kind: kind.parse()?,
                    num: r.get(1)?,
                },
                snippet: substring::snippet(&cols, &pieces, 2 * SNIPPET_TOKENS * 4),
                title: columns[0].clone(),
                status: r.get(2)?,
                score: substring::score(&cols, &pieces),
            });
        }
        // Stable: equal scores stay newest first.
        hits.sort_by(|a, b| a.score.total_cmp(&b.score));
        Ok(hits)
    }

    fn search_within(
        &self,
        query: &str,
        kind: Option<Kind>,
        limit: usize,
        candidates: usize,
    ) -> Result<Vec<SearchHit>> {
        let terms = parse_query(query);
        let Some(expr) = fts_expression(&terms) else {
            return Ok(Vec::new());
        };
        let corpus = self.corpus()?;
        // Item ids are the index's rowids; the table answers max() from its b-tree.
        let newest: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(max(id), 0) FROM items")?
            .query_row([], |r| r.get(0))?;
        let doc_freq = terms
            .iter()
            .map(|t| self.doc_freq(t, corpus.rows, newest))
            .collect::<Result<Vec<f64>>>()?;
        let bm25 = rank::Bm25::new(&terms, &doc_freq, corpus);
        self.best_candidates(&expr, kind, candidates, limit, &bm25)?
            .into_iter()
            .map(|(score, c)| {
                let cols = c.columns.each_ref().map(String::as_str);
                Ok(SearchHit {
                    id: ItemId {
                        kind: c.kind.parse()?,
                        num: c.num,
                    },
                    snippet: rank::snippet(&cols, &terms, SNIPPET_TOKENS),
                    title: c.columns[0].clone(),
                    status: c.status,
                    score,
                })
            })
            .collect()
    }

    /// The `limit` best of the newest `n` live matches, best first (equal scores: newest
    /// first). FTS5 walks its index by descending rowid and stops after `n` rows, so this
    /// costs O(n), not O(matches); text is scored where SQLite holds it and copied only for
    /// rows that enter the top `limit`.
    fn best_candidates(
        &self,
        expr: &str,
        kind: Option<Kind>,
        n: usize,
        limit: usize,
        bm25: &rank::Bm25,
    ) -> Result<Vec<(f64, Candidate)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT i.kind, i.num, i.status, f.title, f.body, f.comments, f.authors, f.tags
             FROM item_fts f JOIN items i ON i.id = f.rowid
             WHERE item_fts MATCH ?1 AND i.archived = 0 AND (?2 IS NULL OR i.kind = ?2)
             ORDER BY f.rowid DESC LIMIT ?3",
        )?;
        let mut rows = stmt.query(rusqlite::params![expr, kind.map(|k| k.as_str()), n as i64])?;
        let mut best: Vec<(f64, Candidate)> = Vec::with_capacity(limit + 1);
        while let Some(r) = rows.next()? {
            let text = |i: usize| -> Result<&str> {
                Ok(r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
            };
            let columns = [text(3)?, text(4)?, text(5)?, text(6)?, text(7)?];
            let score = bm25.score(&columns);
            if best.len() == limit && best.last().is_none_or(|w| score >= w.0) {
                continue;
            }
            let at = best.partition_point(|b| b.0 <= score);
            best.insert(
                at,
                (
                    score,
                    Candidate {
                        kind: r.get(0)?,
                        num: r.get(1)?,
                        status: r.get(2)?,
                        columns: columns.map(str::to_string),
                    },
                ),
            );
            best.truncate(limit);
        }
        Ok(best)
    }

    /// Rows and average tokens per row of the whole index, from FTS5's own totals record
    /// (the numbers its `bm25()` uses), read in O(1).
    fn corpus(&self) -> Result<rank::Corpus> {
        let block: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT block FROM item_fts_data WHERE id = 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        let mut rows = 0u64;
        let mut tokens = 0u64;
        if let Some(block) = block {
            let mut rest = block.as_slice();
            if let Some(n) = read_varint(&mut rest) {
                rows = n;
            }
            while let Some(n) = read_varint(&mut rest) {
                tokens += n;
            }
        }
        let rows = rows.max(1) as f64;
        Ok(rank::Corpus {
            rows,
            avg_tokens: tokens as f64 / rows,
        })
    }

    /// Documents containing `term`: exact below [`DF_SAMPLE`] matches; above, the sample's
    /// density over the rowid range it spans, scaled to the index.
    fn doc_freq(&self, term: &Term, rows: f64, newest: i64) -> Result<f64> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT rowid FROM item_fts WHERE item_fts MATCH ?1 ORDER BY rowid DESC LIMIT ?2",
        )?;
        let ids = stmt
            .query_map(rusqlite::params![term.fts(), DF_SAMPLE as i64], |r| {
                r.get::<_, i64>(0)
            })?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        if ids.len() < DF_SAMPLE {
            return Ok(ids.len() as f64);
        }
        let oldest_sampled = *ids.last().expect("sample is full");
        let span = (newest - oldest_sampled + 1).max(1) as f64;
        Ok((DF_SAMPLE as f64 * rows / span).min(rows))
    }
}

/// SQLite's varint (big-endian 7-bit groups; a 9th byte carries 8 bits), as FTS5 writes it.
fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let b = *buf.get(i)?;
        if i == 8 {
            v = (v << 8) | b as u64;
            *buf = &buf[9..];
            return Some(v);
        }
        v = (v << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_store;
    use super::*;
    use crate::model::{NewItem, Relation};

    #[test]
    fn finds_titles_bodies_comments_authors_ranked() {
        let (_d, mut s) = temp_store();
        let mut p = NewItem::new(Kind::Paper, "Linear-Time Sequence Modeling");
        p.fields.authors = Some("Albert Gu and Tri Dao".into());
        let p = s.add_item(p).unwrap().id;
        let mut body_hit = NewItem::new(Kind::Idea, "Something else");
        body_hit.body = "uses a selective scan inside".into();
        let body_hit = s.add_item(body_hit).unwrap().id;
        let title_hit = s
            .add_item(NewItem::new(Kind::Idea, "Selective scan kernel"))
            .unwrap()
            .id;
        let t = s
            .add_item(NewItem::new(Kind::Task, "Benchmark"))
            .unwrap()
            .id;
        s.comment(t, "ask Tri about the chunked kernel").unwrap();
        s.link(title_hit, p, Some(Relation::MotivatedBy)).unwrap();

        let hits = s.search("selective scan", None, 10).unwrap();
        let ids: Vec<_> = hits.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![title_hit, body_hit], "title match ranks first");
        assert_eq!(s.search("dao", None, 10).unwrap()[0].id, p);
        assert_eq!(s.search("chunked", None, 10).unwrap()[0].id, t);
        assert_eq!(s.search("kern*", Some(Kind::Task), 10).unwrap()[0].id, t);
        assert!(
            s.search("kern ask", None, 10).unwrap().is_empty(),
            "whole words, but for the last"
        );
        assert_eq!(s.search("ask kern", None, 10).unwrap()[0].id, t);
        // Edits are reindexed.
        let patch = crate::model::ItemPatch {
            title: Some("Renamed".into()),
            ..Default::default()
        };
        s.update(title_hit, &patch).unwrap();
        let ids: Vec<_> = s
            .search("kernel", None, 10)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, vec![t]);
        s.archive(t, true).unwrap();
        assert!(s.search("chunked", None, 10).unwrap().is_empty());
    }

    /// Our BM25 is FTS5's: on a notebook small enough for exact document frequencies,
    /// every hit's score equals what FTS5's `bm25()` gives the same row.
    #[test]
    fn scores_equal_fts5_bm25() {
        let (_d, mut s) = temp_store();
        let mut words = crate::bench::Words::zipf(7);
        for i in 0..200 {
            let mut n = NewItem::new(Kind::ALL[i % 4], words.sentence(5));
            n.body = words.sentence(30);
            if n.kind == Kind::Paper {
                n.fields.authors = Some(words.sentence(2));
            }
            let id = s.add_item(n).unwrap().id;
            if i % 5 == 0 {
                s.comment(id, &words.sentence(8)).unwrap();
            }
        }
        let mut checked = 0;
        for q in [
            "mamba",
            "selective scan",
            "state",
            "kernel attention",
            "sca*",
        ] {
            let hits = s.search(q, None, 50).unwrap();
            assert!(!hits.is_empty(), "{q}");
            let expr = fts_expression(&parse_query(q)).unwrap();
            for h in &hits {
                let fts: f64 = s
                    .conn
                    .query_row(
                        "SELECT bm25(item_fts, 10.0, 1.0, 1.0, 4.0, 3.0) FROM item_fts
                         JOIN items i ON i.id = item_fts.rowid
                         WHERE item_fts MATCH ?1 AND i.kind = ?2 AND i.num = ?3",
                        rusqlite::params![expr, h.id.kind.as_str(), h.id.num],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert!(
                    (h.score - fts).abs() <= 1e-9 * fts.abs().max(1.0),
                    "{q}: {} scored {} but FTS5 says {fts}",
                    h.id,
                    h.score
                );
                checked += 1;
            }
            assert!(hits.windows(2).all(|w| w[0].score <= w[1].score), "{q}");
        }
        assert!(checked > 50, "only {checked} hits compared");
    }

    #[test]
    fn only_the_newest_candidates_are_ranked() {
        let (_d, mut s) = temp_store();
        let mut ids = Vec::new();
        for i in 0..12 {
            // Older items are the better matches: "scan" twice in the title.
            let title = if i < 6 { "scan scan" } else { "scan notes" };
            ids.push(s.add_item(NewItem::new(Kind::Idea, title)).unwrap().id);
        }
        let all = s.search_within("scan", None, 20, 100).unwrap();
        assert_eq!(all.len(), 12);
        assert!(ids[..6].contains(&all[0].id), "best match ranks first");
        let newest = s.search_within("scan", None, 20, 4).unwrap();
        let got: Vec<_> = newest.iter().map(|h| h.id).collect();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|id| ids[8..].contains(id)), "{got:?}");
        // Archived items and other kinds are filtered before the cap, not after.
        s.archive(ids[11], true).unwrap();
        let newest = s.search_within("scan", Some(Kind::Idea), 20, 4).unwrap();
        assert!(newest.iter().all(|h| ids[7..11].contains(&h.id)));
        assert_eq!(newest.len(), 4);
    }

    #[test]
    fn document_frequency_is_estimated_above_the_sample() {
        let (_d, mut s) = temp_store();
        let n = 3 * DF_SAMPLE;
        for i in 0..n {
            let title = if i % 3 == 0 { "mamba state" } else { "state" };
            s.add_item(NewItem::new(Kind::Task, title)).unwrap();
        }
        let corpus = s.corpus().unwrap();
        assert_eq!(corpus.rows, n as f64);
        assert!((corpus.avg_tokens - (1.0 + 1.0 / 3.0)).abs() < 0.01);
        let newest = n as i64;
        let term = |w: &str| parse_query(w).remove(0);
        assert_eq!(
            s.doc_freq(&term("state"), corpus.rows, newest).unwrap(),
            n as f64
        );
        let mamba = s.doc_freq(&term("mamba"), corpus.rows, newest).unwrap();
        assert!((mamba - n as f64 / 3.0).abs() < 0.05 * n as f64, "{mamba}");
        assert_eq!(
            s.doc_freq(&term("absent"), corpus.rows, newest).unwrap(),
            0.0
        );
    }

    #[test]
    fn varints_decode_like_sqlite() {
        let mut buf: &[u8] = &[0x05, 0x81, 0x00, 0xff, 0x7f];
        assert_eq!(read_varint(&mut buf), Some(5));
        assert_eq!(read_varint(&mut buf), Some(128));
        assert_eq!(read_varint(&mut buf), Some(0x3fff));
        assert_eq!(read_varint(&mut buf), None);
        let mut nine: &[u8] = &[0xff; 9];
        assert_eq!(read_varint(&mut nine), Some(u64::MAX));
    }
}
