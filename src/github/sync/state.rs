//! The `gh_*` bookkeeping tables: per-repo state (cursors, the token's login), cached pages,
//! item links with their snapshots, and conflict fields.
use super::*;

pub(crate) fn get_state(
    conn: &rusqlite::Connection,
    repo: &str,
    key: &str,
) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM gh_state WHERE repo = ?1 AND key = ?2",
            params![repo, key],
            |r| r.get(0),
        )
        .optional()?)
}

pub(crate) fn set_state(tx: &Transaction, repo: &str, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO gh_state (repo, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (repo, key) DO UPDATE SET value = ?3",
        params![repo, key, value],
    )?;
    Ok(())
}

pub(super) fn cache_page(
    tx: &Transaction,
    url: &str,
    etag_and_link: Option<&str>,
    body: &str,
) -> Result<()> {
    if let Some(v) = etag_and_link {
        let (etag, link) = v.split_once('\n').unwrap_or((v, ""));
        tx.execute(
            "INSERT OR REPLACE INTO gh_etags (url, etag, body, link) VALUES (?1, ?2, ?3, ?4)",
            params![url, etag, body, Some(link).filter(|l| !l.is_empty())],
        )?;
    }
    Ok(())
}

pub(crate) fn load_link(conn: &rusqlite::Connection, rowid: i64) -> Result<Option<Stored>> {
    let snap: Option<String> = conn
        .query_row(
            "SELECT snapshot FROM gh_issues WHERE item_id = ?1",
            [rowid],
            |r| r.get(0),
        )
        .optional()?;
    snap.map(|s| {
        serde_json::from_str(&s)
            .map_err(|e| Error::Invalid(format!("corrupt sync snapshot for item {rowid}: {e}")))
    })
    .transpose()
}

pub(crate) fn save_link(
    tx: &Transaction,
    ctx: &Ctx,
    repo: &str,
    rowid: i64,
    number: i64,
    stored: &Stored,
) -> Result<()> {
    let snap = serde_json::to_string(stored).expect("snapshot serialises");
    tx.execute(
        "INSERT INTO gh_issues (item_id, repo, number, snapshot, synced_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (item_id) DO UPDATE SET repo = ?2, number = ?3, snapshot = ?4, synced_at = ?5",
        params![rowid, repo, number, snap, ctx.now],
    )?;
    Ok(())
}

pub(crate) fn conflict_fields(conn: &rusqlite::Connection, rowid: i64) -> Result<Vec<Field>> {
    let mut stmt = conn.prepare_cached("SELECT field FROM gh_conflicts WHERE item_id = ?1")?;
    let rows = stmt.query_map([rowid], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r?.parse()?);
    }
    Ok(out)
}
