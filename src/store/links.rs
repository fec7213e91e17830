//! Typed two-way links between items.
use rusqlite::{Transaction, params};

use super::items::{get_item, rowid_of};
use super::{Ctx, Store};
use crate::error::{Error, Result};
use crate::model::{ItemId, Kind, LinkView, Relation};

/// Links `a` to `b` inside an open transaction; returns false when the link already existed.
pub fn insert_link(
    tx: &Transaction,
    ctx: &Ctx,
    a: ItemId,
    b: ItemId,
    rel: Relation,
) -> Result<bool> {
    if a == b {
        return Err(Error::SelfLink(a));
    }
    let (ra, rb) = (rowid_of(tx, a)?, rowid_of(tx, b)?);
    let n = tx.execute(
        "INSERT OR IGNORE INTO links (src, dst, rel, author, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![ra, rb, rel.as_str(), ctx.author, ctx.now],
    )?;
    if n > 0 {
        for (row, text) in [
            (ra, format!("{rel} {b}")),
            (rb, format!("{} {a}", rel.inverse_label())),
        ] {
            tx.execute(
                "INSERT INTO history (item_id, author, at, field, old, new) VALUES (?1, ?2, ?3, 'link', NULL, ?4)",
                params![row, ctx.author, ctx.now, text],
            )?;
            tx.execute(
                "UPDATE items SET updated_at = ?1 WHERE id = ?2",
                params![ctx.now, row],
            )?;
        }
    }
    Ok(n > 0)
}

impl Store {
    /// Links `a` to `b`. Without `rel`, picks the usual relation for the two kinds
    /// (idea motivated-by paper, experiment tests idea, task for experiment...).
    /// Returns the relation used and whether the link is new.
    pub fn link(
        &mut self,
        a: ItemId,
        b: ItemId,
        rel: Option<Relation>,
    ) -> Result<(Relation, bool)> {
        let rel = rel.unwrap_or_else(|| Relation::default_for(a.kind, b.kind));
        self.write(|tx, ctx| Ok((rel, insert_link(tx, ctx, a, b, rel)?)))
    }

    /// Removes links between `a` and `b` in either direction (only `rel` if given).
    /// Returns how many were removed; none is an error naming both items.
    pub fn unlink(&mut self, a: ItemId, b: ItemId, rel: Option<Relation>) -> Result<usize> {
        self.write(|tx, ctx| {
            let (ra, rb) = (rowid_of(tx, a)?, rowid_of(tx, b)?);
            let rel_s = rel.map(|r| r.as_str());
            let n = tx.execute(
                "DELETE FROM links WHERE ((src = ?1 AND dst = ?2) OR (src = ?2 AND dst = ?1))
                   AND (?3 IS NULL OR rel = ?3)",
                params![ra, rb, rel_s],
            )?;
            if n == 0 {
                return Err(Error::NoSuchLink { a, b, rel: rel_s });
            }
            for (row, other) in [(ra, b), (rb, a)] {
                tx.execute(
                    "INSERT INTO history (item_id, author, at, field, old, new) VALUES (?1, ?2, ?3, 'link', ?4, NULL)",
                    params![row, ctx.author, ctx.now, other.to_string()],
                )?;
            }
            Ok(n)
        })
    }

    /// Every link of `id`, seen from `id`'s side, grouped by label then other ID.
    pub fn links_of(&self, id: ItemId) -> Result<Vec<LinkView>> {
        let rowid = rowid_of(&self.conn, id)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT l.rel, 1, i.kind, i.num, i.title, i.status FROM links l JOIN items i ON i.id = l.dst WHERE l.src = ?1
             UNION ALL
             SELECT l.rel, 0, i.kind, i.num, i.title, i.status FROM links l JOIN items i ON i.id = l.src WHERE l.dst = ?1",
        )?;
        let rows = stmt.query_map([rowid], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (rel, outgoing, kind, num, title, status) = row?;
            let relation: Relation = rel.parse()?;
            let kind: Kind = kind.parse()?;
            out.push(LinkView {
                label: if outgoing {
                    relation.as_str().to_string()
                } else {
                    relation.inverse_label().to_string()
                },
                relation,
                outgoing,
                other: ItemId { kind, num },
                other_title: title,
                other_status: status,
            });
        }
        out.sort_by(|x, y| x.label.cmp(&y.label).then(x.other.cmp(&y.other)));
        Ok(out)
    }

    /// Number of links per item rowid, for list columns.
    pub fn link_counts(&self) -> Result<std::collections::HashMap<i64, i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, count(*) FROM (SELECT src AS id FROM links UNION ALL SELECT dst FROM links) GROUP BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Checks an item exists and returns it (helper for commands that touch two items).
    pub fn require(&self, id: ItemId) -> Result<crate::model::Item> {
        get_item(&self.conn, id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_store;
    use super::*;
    use crate::model::NewItem;

    #[test]
    fn links_read_from_both_ends() {
        let (_d, mut s) = temp_store();
        let p = s.add_item(NewItem::new(Kind::Paper, "Mamba")).unwrap().id;
        let i = s.add_item(NewItem::new(Kind::Idea, "hybrid")).unwrap().id;
        let (rel, new) = s.link(i, p, None).unwrap();
        assert_eq!(rel, Relation::MotivatedBy);
        assert!(new);
        assert!(!s.link(i, p, None).unwrap().1, "second link is a no-op");
        let from_idea = s.links_of(i).unwrap();
        assert_eq!(from_idea.len(), 1);
        assert_eq!(from_idea[0].label, "motivated-by");
        assert_eq!(from_idea[0].other, p);
        let from_paper = s.links_of(p).unwrap();
        assert_eq!(from_paper[0].label, "motivates");
        assert_eq!(from_paper[0].other, i);
        assert_eq!(s.unlink(p, i, None).unwrap(), 1);
        assert!(s.links_of(i).unwrap().is_empty());
        assert!(matches!(
            s.unlink(p, i, None),
            Err(Error::NoSuchLink { .. })
        ));
    }

    #[test]
    fn bad_links_are_refused() {
        let (_d, mut s) = temp_store();
        let p = s.add_item(NewItem::new(Kind::Paper, "Mamba")).unwrap().id;
        assert!(matches!(s.link(p, p, None), Err(Error::SelfLink(_))));
        let ghost = ItemId {
            kind: Kind::Task,
            num: 99,
        };
        assert!(matches!(s.link(p, ghost, None), Err(Error::NotFound(g)) if g == ghost));
    }
}
