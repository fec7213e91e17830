-- labbook schema, migration 2: GitHub issue sync state (src/github/).
-- One row per item that has an issue. `snapshot` is the JSON of both sides' values at the
-- last sync (the base of the three-way merge).
CREATE TABLE gh_issues (
    item_id      INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    repo         TEXT NOT NULL,
    number       INTEGER NOT NULL,
    snapshot     TEXT NOT NULL,
    synced_at    TEXT NOT NULL,
    UNIQUE (repo, number)
);

-- A create that was started but whose issue number is not yet known. Before retrying it,
-- sync looks for the item's marker on GitHub and adopts the issue it finds.
CREATE TABLE gh_pending (
    item_id    INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    repo       TEXT NOT NULL,
    started_at TEXT NOT NULL
);

-- Comments mapped both ways (each once). `pending` = a POST started but not confirmed.
CREATE TABLE gh_comments (
    comment_id INTEGER PRIMARY KEY REFERENCES comments (id) ON DELETE CASCADE,
    repo       TEXT NOT NULL,
    remote_id  INTEGER,
    pending    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (repo, remote_id)
);

-- Fields changed on both sides since the last sync, waiting for `labbook resolve`.
CREATE TABLE gh_conflicts (
    item_id     INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    field       TEXT NOT NULL,
    base        TEXT,
    mine        TEXT,
    theirs      TEXT,
    detected_at TEXT NOT NULL,
    PRIMARY KEY (item_id, field)
);

-- Cursors (`since`) and the last-sync time, per repo.
CREATE TABLE gh_state (
    repo  TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (repo, key)
) WITHOUT ROWID;

-- ETag cache for list pages: a 304 replays the stored page without costing rate limit.
CREATE TABLE gh_etags (
    url   TEXT PRIMARY KEY,
    etag  TEXT NOT NULL,
    body  TEXT NOT NULL,
    link  TEXT
);
