//! Metric streams: the packed chunk format (metric_chunks.sql) — written here, read here —
//! and the readers that work on any notebook, including a job notebook opened read-only
//! whatever its schema (the runner reads one while its job trains).
use std::collections::{BTreeMap, HashMap};

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::runs::MetricPoint;
use crate::error::{Error, Result};
use crate::model::RunId;

/// Bytes per packed point: i64 step, f64 value, f64 seconds since the run started.
const POINT_BYTES: usize = 24;

/// Packs one point (little endian).
fn pack(buf: &mut Vec<u8>, p: &MetricPoint) {
    buf.extend_from_slice(&p.step.to_le_bytes());
    buf.extend_from_slice(&p.value.to_le_bytes());
    buf.extend_from_slice(&p.wall_time.to_le_bytes());
}

/// Stores `points` as one packed chunk per key (see metric_chunks.sql).
pub(super) fn insert_points(
    tx: &rusqlite::Transaction,
    id: RunId,
    points: &[MetricPoint],
) -> Result<()> {
    let mut key_ids: HashMap<&str, i64> = HashMap::new();
    {
        let mut get_key = tx.prepare_cached(
            "INSERT INTO metric_keys (key) VALUES (?1) ON CONFLICT (key) DO UPDATE SET key = key RETURNING id",
        )?;
        for p in points {
            if !key_ids.contains_key(p.key.as_str()) {
                let kid: i64 = get_key.query_row([&p.key], |r| r.get(0))?;
                key_ids.insert(&p.key, kid);
            }
        }
    }
    // One chunk row per key: the points of a flush, packed.
    let mut by_key: Vec<(i64, Vec<u8>, i64, i64)> = Vec::new();
    for p in points {
        let kid = key_ids[p.key.as_str()];
        let slot = match by_key.iter().position(|(k, ..)| *k == kid) {
            Some(i) => i,
            None => {
                by_key.push((kid, Vec::new(), p.step, p.step));
                by_key.len() - 1
            }
        };
        let (_, buf, first, last) = &mut by_key[slot];
        pack(buf, p);
        *first = (*first).min(p.step);
        *last = (*last).max(p.step);
    }
    let mut ins = tx.prepare_cached(
        "INSERT INTO metric_chunks (run_id, key_id, first_step, last_step, points) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (kid, buf, first, last) in &by_key {
        ins.execute(params![id.0, kid, first, last, buf])?;
    }
    Ok(())
}

impl Store {
    /// Metric keys logged for a run.
    pub fn metric_keys(&self, id: RunId) -> Result<Vec<String>> {
        Ok(metric_keys_in(&self.conn, id.0)?)
    }

    /// One metric's (step, value) series in step order; non-finite points come back as NaN.
    pub fn metric_series(&self, id: RunId, key: &str) -> Result<Vec<(i64, f64)>> {
        Ok(self
            .metric_points(id, key)?
            .into_iter()
            .map(|(s, v, _)| (s, v))
            .collect())
    }

    /// [`Store::metric_series`] with each point's wall time (seconds since the run started).
    pub fn metric_points(&self, id: RunId, key: &str) -> Result<Vec<(i64, f64, f64)>> {
        Ok(metric_points_in(&self.conn, id.0, key)?)
    }

    /// Replaces every metric point of run `id` with `points`, in one transaction (a remote
    /// run's full-resolution curves over the downsampled ones its results carried).
    pub fn replace_curves(&mut self, id: RunId, points: &[MetricPoint]) -> Result<()> {
        self.write(|tx, _| {
            let known: Option<i64> = tx
                .query_row("SELECT id FROM runs WHERE id = ?1", [id.0], |r| r.get(0))
                .optional()?;
            known.ok_or(Error::RunNotFound(id))?;
            tx.execute("DELETE FROM metric_chunks WHERE run_id = ?1", [id.0])?;
            if has_row_metrics(tx) {
                tx.execute("DELETE FROM metrics WHERE run_id = ?1", [id.0])?;
            }
            insert_points(tx, id, points)
        })
    }
}

/// Whether the notebook still has the pre-chunk `metrics` table (a schema older or newer
/// than this binary's may not).
fn has_row_metrics(conn: &rusqlite::Connection) -> bool {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'metrics'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .is_ok_and(|n| n > 0)
}

/// Metric keys of run `run` in notebook `conn` — this binary's or one opened read-only
/// whatever its schema (the runner reads a job's notebook this way).
pub fn metric_keys_in(conn: &rusqlite::Connection, run: i64) -> rusqlite::Result<Vec<String>> {
    let sql = if has_row_metrics(conn) {
        "SELECT k.key FROM metric_keys k WHERE k.id IN (
            SELECT key_id FROM metric_chunks WHERE run_id = ?1
            UNION SELECT key_id FROM metrics WHERE run_id = ?1) ORDER BY k.key"
    } else {
        "SELECT k.key FROM metric_keys k WHERE k.id IN (
            SELECT key_id FROM metric_chunks WHERE run_id = ?1) ORDER BY k.key"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    stmt.query_map([run], |r| r.get(0))?.collect()
}

/// One metric's (step, value, wall time) points in step order, from notebook `conn` (see
/// [`metric_keys_in`]); non-finite values come back as NaN.
pub fn metric_points_in(
    conn: &rusqlite::Connection,
    run: i64,
    key: &str,
) -> rusqlite::Result<Vec<(i64, f64, f64)>> {
    let mut by_step: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    // Rows from before migration 3 first, then chunks in write order: later wins.
    if has_row_metrics(conn) {
        let mut old = conn.prepare_cached(
            "SELECT m.step, m.value, m.wall_time FROM metrics m JOIN metric_keys k ON k.id = m.key_id
             WHERE m.run_id = ?1 AND k.key = ?2",
        )?;
        for row in old.query_map(params![run, key], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
                r.get::<_, Option<f64>>(2)?.unwrap_or(0.0),
            ))
        })? {
            let (step, value, wall) = row?;
            by_step.insert(step, (value, wall));
        }
    }
    let mut chunks = conn.prepare_cached(
        "SELECT c.points FROM metric_chunks c JOIN metric_keys k ON k.id = c.key_id
         WHERE c.run_id = ?1 AND k.key = ?2 ORDER BY c.id",
    )?;
    let mut rows = chunks.query(params![run, key])?;
    while let Some(row) = rows.next()? {
        let blob: Vec<u8> = row.get(0)?;
        for (step, value, wall) in chunk_points(&blob) {
            by_step.insert(step, (value, wall));
        }
    }
    Ok(by_step.into_iter().map(|(s, (v, w))| (s, v, w)).collect())
}

/// The `(step, value, wall time)` points of a packed metric chunk (24 bytes each, little
/// endian: i64 step, f64 value, f64 seconds since the run started).
fn chunk_points(blob: &[u8]) -> impl Iterator<Item = (i64, f64, f64)> + '_ {
    blob.chunks_exact(POINT_BYTES).map(|p| {
        let word = |i: usize| <[u8; 8]>::try_from(&p[i..i + 8]).expect("8 bytes");
        (
            i64::from_le_bytes(word(0)),
            f64::from_le_bytes(word(8)),
            f64::from_le_bytes(word(16)),
        )
    })
}

/// The latest value of each metric of run `run` in notebook `conn` (the last point of each
/// key's newest chunk), by key: what a status line shows while the run trains.
pub fn latest_values_in(
    conn: &rusqlite::Connection,
    run: i64,
) -> rusqlite::Result<Vec<(String, f64)>> {
    let mut stmt = conn.prepare(
        "SELECT k.key, c.points FROM metric_chunks c JOIN metric_keys k ON k.id = c.key_id
         WHERE c.id IN (SELECT max(id) FROM metric_chunks WHERE run_id = ?1 GROUP BY key_id)
         ORDER BY k.key",
    )?;
    let rows = stmt.query_map([run], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, blob) = row?;
        if let Some((_, value, _)) = chunk_points(&blob).last() {
            out.push((key, value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_chunk_reads_back_point_for_point() {
        let points = [(3, 0.5, 1.25), (4, f64::NAN, 2.0), (-1, -7.0, 0.0)];
        let mut buf = Vec::new();
        for (step, value, wall_time) in points {
            pack(
                &mut buf,
                &MetricPoint {
                    key: "loss".into(),
                    step,
                    value,
                    wall_time,
                },
            );
        }
        assert_eq!(buf.len(), 3 * POINT_BYTES);
        let back: Vec<_> = chunk_points(&buf).collect();
        assert_eq!(back.len(), 3);
        for ((s, v, w), (s2, v2, w2)) in points.iter().zip(&back) {
            assert_eq!((s, w), (s2, w2));
            assert!(v == v2 || (v.is_nan() && v2.is_nan()));
        }
    }
}
