//! Items: create, read, list, edit (with history), tags, comments, archive and purge.
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{Ctx, Store};
use crate::error::{Error, Result};
use crate::model::{
    Comment, Fields, HistoryEntry, Item, ItemId, ItemPatch, Kind, NewItem, normalize_tag,
};

const ITEM_COLS: &str = "id, kind, num, title, body, status, author, created_at, updated_at, archived,
    assignee, priority, due, authors, year, venue, arxiv_id, doi, url, bibtex_key, bibtex,
    hypothesis, conclusion,
    (SELECT group_concat(tag, ',') FROM (SELECT tag FROM tags WHERE item_id = items.id ORDER BY tag))";

fn item_from_row(r: &Row) -> rusqlite::Result<Item> {
    let kind: String = r.get(1)?;
    let kind: Kind = kind.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, "bad kind".into())
    })?;
    let tags: Option<String> = r.get(23)?;
    Ok(Item {
        rowid: r.get(0)?,
        id: ItemId {
            kind,
            num: r.get(2)?,
        },
        kind,
        title: r.get(3)?,
        body: r.get(4)?,
        status: r.get(5)?,
        author: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        archived: r.get(9)?,
        fields: Fields {
            assignee: r.get(10)?,
            priority: r.get(11)?,
            due: r.get(12)?,
            authors: r.get(13)?,
            year: r.get(14)?,
            venue: r.get(15)?,
            arxiv_id: r.get(16)?,
            doi: r.get(17)?,
            url: r.get(18)?,
            bibtex_key: r.get(19)?,
            bibtex: r.get(20)?,
            hypothesis: r.get(21)?,
            conclusion: r.get(22)?,
        },
        tags: tags
            .map(|t| t.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

/// Which items `list` returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub kind: Option<Kind>,
    pub status: Option<String>,
    pub tag: Option<String>,
    pub linked_to: Option<ItemId>,
    pub include_archived: bool,
}

pub(crate) fn rowid_of(conn: &rusqlite::Connection, id: ItemId) -> Result<i64> {
    conn.query_row(
        "SELECT id FROM items WHERE kind = ?1 AND num = ?2",
        params![id.kind.as_str(), id.num],
        |r| r.get(0),
    )
    .optional()?
    .ok_or(Error::NotFound(id))
}

pub(crate) fn get_item(conn: &rusqlite::Connection, id: ItemId) -> Result<Item> {
    conn.query_row(
        &format!("SELECT {ITEM_COLS} FROM items WHERE kind = ?1 AND num = ?2"),
        params![id.kind.as_str(), id.num],
        item_from_row,
    )
    .optional()?
    .ok_or(Error::NotFound(id))
}

pub(crate) fn get_item_by_rowid(conn: &rusqlite::Connection, rowid: i64) -> Result<Item> {
    conn.query_row(
        &format!("SELECT {ITEM_COLS} FROM items WHERE id = ?1"),
        [rowid],
        item_from_row,
    )
    .map_err(Error::from)
}

fn record(
    tx: &Transaction,
    ctx: &Ctx,
    rowid: i64,
    field: &str,
    old: Option<&str>,
    new: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO history (item_id, author, at, field, old, new) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![rowid, ctx.author, ctx.now, field, old, new],
    )?;
    Ok(())
}

fn touch(tx: &Transaction, ctx: &Ctx, rowid: i64) -> Result<()> {
    tx.execute(
        "UPDATE items SET updated_at = ?1 WHERE id = ?2",
        params![ctx.now, rowid],
    )?;
    Ok(())
}

fn check_fields(kind: Kind, fields: &Fields) -> Result<()> {
    if let Some(field) = fields.foreign_to(kind).first() {
        return Err(Error::InvalidField {
            kind,
            field: field.to_string(),
            allowed: crate::model::fields_for(kind).join(", "),
        });
    }
    Ok(())
}

/// Inserts an item inside an open transaction (used by add, import and the example seed).
/// A paper already in the notebook with the same DOI, arXiv id or citation key as
/// `fields`, with which of the three matched (`DOI 10.…`, `arXiv 2312.…`, `key gu2023`).
pub(crate) fn duplicate_paper(
    conn: &rusqlite::Connection,
    fields: &crate::model::Fields,
) -> Result<Option<(ItemId, String)>> {
    let dup: Option<(String, i64, String)> = conn
        .query_row(
            "SELECT kind, num, CASE
                WHEN ?1 IS NOT NULL AND lower(doi) = lower(?1) THEN 'DOI ' || doi
                WHEN ?2 IS NOT NULL AND arxiv_id = ?2 THEN 'arXiv ' || arxiv_id
                ELSE 'key ' || bibtex_key END
             FROM items WHERE kind = 'paper' AND (
                (?1 IS NOT NULL AND lower(doi) = lower(?1)) OR
                (?2 IS NOT NULL AND arxiv_id = ?2) OR
                (?3 IS NOT NULL AND bibtex_key = ?3))
             LIMIT 1",
            rusqlite::params![fields.doi, fields.arxiv_id, fields.bibtex_key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    dup.map(|(kind, num, why)| {
        Ok((
            ItemId {
                kind: kind.parse()?,
                num,
            },
            why,
        ))
    })
    .transpose()
}

pub fn insert_item(tx: &Transaction, ctx: &Ctx, new: &NewItem) -> Result<Item> {
    let title = new.title.trim();
    if title.is_empty() {
        return Err(Error::EmptyTitle);
    }
    let status = new
        .status
        .clone()
        .unwrap_or_else(|| new.kind.default_status().to_string());
    new.kind.check_status(&status)?;
    check_fields(new.kind, &new.fields)?;
    let tags = new
        .tags
        .iter()
        .map(|t| normalize_tag(t))
        .collect::<Result<Vec<_>>>()?;
    let num: i64 = tx.query_row(
        "INSERT INTO counters (kind, next) VALUES (?1, 2)
             ON CONFLICT (kind) DO UPDATE SET next = next + 1
             RETURNING next - 1",
        [new.kind.as_str()],
        |r| r.get(0),
    )?;
    let f = &new.fields;
    tx.execute(
        "INSERT INTO items (kind, num, title, body, status, author, created_at, updated_at,
            assignee, priority, due, authors, year, venue, arxiv_id, doi, url, bibtex_key, bibtex,
            hypothesis, conclusion)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        params![
            new.kind.as_str(),
            num,
            title,
            new.body,
            status,
            ctx.author,
            ctx.now,
            f.assignee,
            f.priority,
            f.due,
            f.authors,
            f.year,
            f.venue,
            f.arxiv_id,
            f.doi,
            f.url,
            f.bibtex_key,
            f.bibtex,
            f.hypothesis,
            f.conclusion
        ],
    )?;
    let rowid = tx.last_insert_rowid();
    let mut stmt =
        tx.prepare_cached("INSERT OR IGNORE INTO tags (item_id, tag) VALUES (?1, ?2)")?;
    for tag in &tags {
        stmt.execute(params![rowid, tag])?;
    }
    let id = ItemId {
        kind: new.kind,
        num,
    };
    record(tx, ctx, rowid, "created", None, Some(title))?;
    get_item(tx, id)
}

pub(crate) fn apply_patch(
    tx: &Transaction,
    ctx: &Ctx,
    id: ItemId,
    patch: &ItemPatch,
) -> Result<Item> {
    let item = get_item(tx, id)?;
    let rowid = item.rowid;
    let mut changed = false;
    let mut set_text = |col: &str, old: &str, new: &str| -> Result<()> {
        if old != new {
            tx.execute(
                &format!("UPDATE items SET {col} = ?1 WHERE id = ?2"),
                params![new, rowid],
            )?;
            record(tx, ctx, rowid, col, Some(old), Some(new))?;
            changed = true;
        }
        Ok(())
    };
    if let Some(title) = &patch.title {
        let title = title.trim();
        if title.is_empty() {
            return Err(Error::EmptyTitle);
        }
        set_text("title", &item.title, title)?;
    }
    if let Some(body) = &patch.body {
        set_text("body", &item.body, body)?;
    }
    if let Some(status) = &patch.status {
        item.kind.check_status(status)?;
        set_text("status", &item.status, status)?;
    }
    if !patch.fields.is_empty() {
        let mut fields = item.fields.clone();
        for (name, value) in &patch.fields {
            fields.set(item.kind, name, value.as_deref())?;
        }
        for name in crate::model::fields_for(item.kind) {
            let (old, new) = (item.fields.get(name), fields.get(name));
            if old != new {
                // Integer columns get integers so SQLite comparisons and sorting stay numeric.
                let value: rusqlite::types::Value = match (*name, &new) {
                    ("priority" | "year", Some(v)) => {
                        v.parse::<i64>().map(Into::into).unwrap_or(v.clone().into())
                    }
                    (_, Some(v)) => v.clone().into(),
                    (_, None) => rusqlite::types::Value::Null,
                };
                tx.execute(
                    &format!("UPDATE items SET {name} = ?1 WHERE id = ?2"),
                    params![value, rowid],
                )?;
                record(tx, ctx, rowid, name, old.as_deref(), new.as_deref())?;
                changed = true;
            }
        }
    }
    if let Some(tags) = &patch.tags {
        let mut new_tags = tags
            .iter()
            .map(|t| normalize_tag(t))
            .collect::<Result<Vec<_>>>()?;
        new_tags.sort();
        new_tags.dedup();
        if new_tags != item.tags {
            tx.execute("DELETE FROM tags WHERE item_id = ?1", [rowid])?;
            let mut stmt = tx.prepare_cached("INSERT INTO tags (item_id, tag) VALUES (?1, ?2)")?;
            for t in &new_tags {
                stmt.execute(params![rowid, t])?;
            }
            record(
                tx,
                ctx,
                rowid,
                "tags",
                Some(&item.tags.join(", ")),
                Some(&new_tags.join(", ")),
            )?;
            changed = true;
        }
    }
    if changed {
        touch(tx, ctx, rowid)?;
    }
    get_item(tx, id)
}

impl Store {
    pub fn add_item(&mut self, new: NewItem) -> Result<Item> {
        self.write(|tx, ctx| insert_item(tx, ctx, &new))
    }

    pub fn get(&self, id: ItemId) -> Result<Item> {
        get_item(&self.conn, id)
    }

    /// Applies a patch in one transaction, recording a history row per changed field.
    pub fn update(&mut self, id: ItemId, patch: &ItemPatch) -> Result<Item> {
        self.write(|tx, ctx| apply_patch(tx, ctx, id, patch))
    }

    /// Adds and removes tags in one step.
    pub fn retag(&mut self, id: ItemId, add: &[String], remove: &[String]) -> Result<Item> {
        self.write(|tx, ctx| {
            let item = get_item(tx, id)?;
            let remove = remove
                .iter()
                .map(|t| normalize_tag(t))
                .collect::<Result<Vec<_>>>()?;
            let mut tags: Vec<String> = item
                .tags
                .iter()
                .filter(|t| !remove.contains(t))
                .cloned()
                .collect();
            for t in add {
                tags.push(normalize_tag(t)?);
            }
            let patch = ItemPatch {
                tags: Some(tags),
                ..Default::default()
            };
            apply_patch(tx, ctx, id, &patch)
        })
    }

    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Item>> {
        let mut sql = format!("SELECT {ITEM_COLS} FROM items WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(kind) = filter.kind {
            args.push(kind.as_str().to_string().into());
            sql.push_str(&format!(" AND kind = ?{}", args.len()));
        }
        if let Some(status) = &filter.status {
            if let Some(kind) = filter.kind {
                kind.check_status(status)?;
            } else if !Kind::ALL
                .iter()
                .any(|k| k.statuses().contains(&status.as_str()))
            {
                return Err(Error::Invalid(format!(
                    "`{status}` is not a status of any kind"
                )));
            }
            args.push(status.clone().into());
            sql.push_str(&format!(" AND status = ?{}", args.len()));
        }
        if let Some(tag) = &filter.tag {
            args.push(normalize_tag(tag)?.into());
            sql.push_str(&format!(
                " AND id IN (SELECT item_id FROM tags WHERE tag = ?{})",
                args.len()
            ));
        }
        if let Some(other) = filter.linked_to {
            let rowid = rowid_of(&self.conn, other)?;
            args.push(rowid.into());
            let n = args.len();
            sql.push_str(&format!(
                " AND id IN (SELECT dst FROM links WHERE src = ?{n} UNION SELECT src FROM links WHERE dst = ?{n})"
            ));
        }
        if !filter.include_archived {
            sql.push_str(" AND archived = 0");
        }
        sql.push_str(
            " ORDER BY CASE kind WHEN 'task' THEN 0 WHEN 'paper' THEN 1 WHEN 'idea' THEN 2 ELSE 3 END, num",
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), item_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn comment(&mut self, id: ItemId, text: &str) -> Result<Comment> {
        if text.trim().is_empty() {
            return Err(Error::Invalid("a comment cannot be empty".into()));
        }
        self.write(|tx, ctx| {
            let rowid = rowid_of(tx, id)?;
            tx.execute(
                "INSERT INTO comments (item_id, author, body, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![rowid, ctx.author, text, ctx.now],
            )?;
            touch(tx, ctx, rowid)?;
            Ok(Comment {
                id: tx.last_insert_rowid(),
                author: ctx.author.clone(),
                body: text.to_string(),
                created_at: ctx.now.clone(),
            })
        })
    }

    pub fn comments(&self, id: ItemId) -> Result<Vec<Comment>> {
        let rowid = rowid_of(&self.conn, id)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, author, body, created_at FROM comments WHERE item_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([rowid], |r| {
            Ok(Comment {
                id: r.get(0)?,
                author: r.get(1)?,
                body: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn history(&self, id: ItemId) -> Result<Vec<HistoryEntry>> {
        let rowid = rowid_of(&self.conn, id)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT author, at, field, old, new FROM history WHERE item_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([rowid], |r| {
            Ok(HistoryEntry {
                author: r.get(0)?,
                at: r.get(1)?,
                field: r.get(2)?,
                old: r.get(3)?,
                new: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Archives (hides) an item; it keeps its ID, links and history.
    pub fn archive(&mut self, id: ItemId, archived: bool) -> Result<Item> {
        self.write(|tx, ctx| {
            let item = get_item(tx, id)?;
            if item.archived != archived {
                tx.execute(
                    "UPDATE items SET archived = ?1 WHERE id = ?2",
                    params![archived, item.rowid],
                )?;
                record(
                    tx,
                    ctx,
                    item.rowid,
                    "archived",
                    Some(&item.archived.to_string()),
                    Some(&archived.to_string()),
                )?;
                touch(tx, ctx, item.rowid)?;
            }
            get_item(tx, id)
        })
    }

    /// Deletes an item with its links, tags, comments and history. Its number is never reused.
    pub fn purge(&mut self, id: ItemId) -> Result<()> {
        self.write(|tx, _| {
            let rowid = rowid_of(tx, id)?;
            tx.execute("DELETE FROM items WHERE id = ?1", [rowid])?;
            Ok(())
        })
    }

    /// Items in the notebook, archived ones included.
    pub fn item_count(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT count(*) FROM items", [], |r| r.get(0))?)
    }

    /// Item counts per kind (not archived), for status lines.
    pub fn counts(&self) -> Result<Vec<(Kind, i64)>> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let n: i64 = self.conn.query_row(
                "SELECT count(*) FROM items WHERE kind = ?1 AND archived = 0",
                [kind.as_str()],
                |r| r.get(0),
            )?;
            out.push((kind, n));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_store;
    use super::*;

    #[test]
    fn add_get_roundtrips_any_text() {
        let (_d, mut s) = temp_store();
        let title = "Ünïcödé 'quotes' \"double\" ; DROP TABLE items; -- 🐍 選択的";
        let mut new = NewItem::new(Kind::Task, title);
        new.body = "line1\nline2 with `code` and % _ wildcards".into();
        new.tags = vec!["Mamba".into(), "scan speed".into()];
        let item = s.add_item(new).unwrap();
        assert_eq!(item.id.to_string(), "T-1");
        let back = s.get(item.id).unwrap();
        assert_eq!(back.title, title);
        assert_eq!(back.body, "line1\nline2 with `code` and % _ wildcards");
        assert_eq!(back.tags, vec!["mamba", "scan-speed"]);
        assert_eq!(back.status, "todo");
        assert_eq!(back.author, "tester");
    }

    #[test]
    fn numbers_are_per_kind_and_never_reused() {
        let (_d, mut s) = temp_store();
        let t1 = s.add_item(NewItem::new(Kind::Task, "a")).unwrap();
        let p1 = s.add_item(NewItem::new(Kind::Paper, "b")).unwrap();
        assert_eq!((t1.id.num, p1.id.num), (1, 1));
        s.purge(t1.id).unwrap();
        let t2 = s.add_item(NewItem::new(Kind::Task, "c")).unwrap();
        assert_eq!(t2.id.to_string(), "T-2");
        assert!(matches!(s.get(t1.id), Err(Error::NotFound(_))));
    }

    #[test]
    fn update_records_history_per_field() {
        let (_d, mut s) = temp_store();
        let t = s.add_item(NewItem::new(Kind::Task, "scan")).unwrap();
        let patch = ItemPatch {
            status: Some("doing".into()),
            fields: vec![("priority".into(), Some("2".into()))],
            ..Default::default()
        };
        let t2 = s.update(t.id, &patch).unwrap();
        assert_eq!(t2.status, "doing");
        assert_eq!(t2.fields.priority, Some(2));
        let h = s.history(t.id).unwrap();
        let fields: Vec<_> = h.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["created", "status", "priority"]);
        assert_eq!(h[1].old.as_deref(), Some("todo"));
        assert_eq!(h[1].new.as_deref(), Some("doing"));
        // A no-op patch changes nothing.
        s.update(t.id, &patch).unwrap();
        assert_eq!(s.history(t.id).unwrap().len(), 3);
    }

    #[test]
    fn invalid_patch_writes_nothing() {
        let (_d, mut s) = temp_store();
        let t = s.add_item(NewItem::new(Kind::Task, "scan")).unwrap();
        let patch = ItemPatch {
            title: Some("renamed".into()),
            status: Some("adopted".into()),
            ..Default::default()
        };
        assert!(matches!(
            s.update(t.id, &patch),
            Err(Error::InvalidStatus { .. })
        ));
        assert_eq!(s.get(t.id).unwrap().title, "scan");
        assert_eq!(s.history(t.id).unwrap().len(), 1);
    }

    #[test]
    fn list_filters_by_kind_status_tag_and_archive() {
        let (_d, mut s) = temp_store();
        let mut a = NewItem::new(Kind::Task, "a");
        a.tags = vec!["x".into()];
        let a = s.add_item(a).unwrap();
        s.add_item(NewItem::new(Kind::Task, "b")).unwrap();
        s.add_item(NewItem::new(Kind::Idea, "c")).unwrap();
        let f = |kind, tag: Option<&str>| ListFilter {
            kind,
            tag: tag.map(Into::into),
            ..Default::default()
        };
        assert_eq!(s.list(&f(Some(Kind::Task), None)).unwrap().len(), 2);
        assert_eq!(s.list(&f(None, Some("x"))).unwrap().len(), 1);
        s.archive(a.id, true).unwrap();
        assert_eq!(s.list(&f(Some(Kind::Task), None)).unwrap().len(), 1);
        let all = ListFilter {
            include_archived: true,
            ..Default::default()
        };
        assert_eq!(s.list(&all).unwrap().len(), 3);
    }

    #[test]
    fn comments_are_kept_in_order() {
        let (_d, mut s) = temp_store();
        let t = s.add_item(NewItem::new(Kind::Experiment, "e")).unwrap();
        s.comment(t.id, "first").unwrap();
        s.comment(t.id, "second").unwrap();
        let c = s.comments(t.id).unwrap();
        assert_eq!(
            c.iter().map(|c| c.body.as_str()).collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert!(s.comment(t.id, "  ").is_err());
    }
}
