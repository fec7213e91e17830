-- labbook schema, migration 3: metric points in chunks.
-- One row per (run, key, flush) holding packed little-endian (step i64, value f64,
-- wall_time f64) triples. A row per point costs ~2.5 µs in SQLite on a small machine
-- (~400k points/s); a chunk of a second's points costs about the same as one row.
-- Points written before this migration stay in `metrics`; readers merge both.
CREATE TABLE metric_chunks (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key_id     INTEGER NOT NULL REFERENCES metric_keys (id),
    first_step INTEGER NOT NULL,
    last_step  INTEGER NOT NULL,
    points     BLOB NOT NULL
);
CREATE INDEX metric_chunks_run_key ON metric_chunks (run_id, key_id, id);
