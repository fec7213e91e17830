//! Ranked full-text search (FTS5, bm25) over titles, bodies, comments, paper authors and tags.
use serde::Serialize;

use super::Store;
use crate::error::Result;
use crate::model::{ItemId, Kind};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub id: ItemId,
    pub title: String,
    pub status: String,
    /// Matching text with hits in `[brackets]`.
    pub snippet: String,
    /// bm25 score; lower is better.
    pub score: f64,
}

/// Turns what a user typed into a safe FTS5 query: every word must match,
/// the last one as a prefix (search-as-you-type). Quotes neutralise FTS syntax.
pub fn fts_query(input: &str) -> Option<String> {
    let words: Vec<String> = input
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    if words.is_empty() {
        return None;
    }
    let last = words.len() - 1;
    Some(
        words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == last {
                    format!("{w}*")
                } else {
                    w.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    )
}

impl Store {
    /// Best matches first. Archived items are left out.
    pub fn search(&self, query: &str, kind: Option<Kind>, limit: usize) -> Result<Vec<SearchHit>> {
        let Some(q) = fts_query(query) else {
            return Ok(Vec::new());
        };
        // Weights: title, body, comments, authors, tags.
        let mut stmt = self.conn.prepare_cached(
            "SELECT i.kind, i.num, i.title, i.status,
                    snippet(item_fts, -1, '[', ']', '…', 10),
                    bm25(item_fts, 10.0, 1.0, 1.0, 4.0, 3.0) AS score
             FROM item_fts JOIN items i ON i.id = item_fts.rowid
             WHERE item_fts MATCH ?1 AND i.archived = 0 AND (?2 IS NULL OR i.kind = ?2)
             ORDER BY score LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![q, kind.map(|k| k.as_str()), limit as i64],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, f64>(5)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, num, title, status, snippet, score) = row?;
            out.push(SearchHit {
                id: ItemId {
                    kind: kind.parse()?,
                    num,
                },
                title,
                status,
                snippet,
                score,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_store;
    use super::*;
    use crate::model::{NewItem, Relation};

    #[test]
    fn query_is_sanitised() {
        assert_eq!(
            fts_query("selective scan").unwrap(),
            "\"selective\" \"scan\"*"
        );
        assert_eq!(
            fts_query("a\"b OR c*").unwrap(),
            "\"a\" \"b\" \"OR\" \"c\"*"
        );
        assert!(fts_query(" -- ").is_none());
    }

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
        assert_eq!(s.search("kern", Some(Kind::Task), 10).unwrap()[0].id, t);
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
}
