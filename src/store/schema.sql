-- labbook schema, migration 1. Later steps add columns/tables in new migrations.
CREATE TABLE counters (
    kind TEXT PRIMARY KEY,
    next INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE items (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('task', 'paper', 'idea', 'experiment')),
    num         INTEGER NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    author      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    archived    INTEGER NOT NULL DEFAULT 0,
    assignee    TEXT,
    priority    INTEGER,
    due         TEXT,
    authors     TEXT,
    year        INTEGER,
    venue       TEXT,
    arxiv_id    TEXT,
    doi         TEXT,
    url         TEXT,
    bibtex_key  TEXT,
    bibtex      TEXT,
    hypothesis  TEXT,
    conclusion  TEXT,
    UNIQUE (kind, num)
);
CREATE INDEX items_kind_updated ON items (kind, archived, updated_at);
CREATE INDEX items_doi ON items (doi) WHERE doi IS NOT NULL;
CREATE INDEX items_arxiv ON items (arxiv_id) WHERE arxiv_id IS NOT NULL;
CREATE INDEX items_bibkey ON items (bibtex_key) WHERE bibtex_key IS NOT NULL;

CREATE TABLE tags (
    item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    tag     TEXT NOT NULL,
    PRIMARY KEY (item_id, tag)
) WITHOUT ROWID;
CREATE INDEX tags_by_tag ON tags (tag);

CREATE TABLE links (
    id         INTEGER PRIMARY KEY,
    src        INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    dst        INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    rel        TEXT NOT NULL,
    author     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (src, dst, rel),
    CHECK (src <> dst)
);
CREATE INDEX links_dst ON links (dst);

CREATE TABLE comments (
    id         INTEGER PRIMARY KEY,
    item_id    INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    author     TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX comments_item ON comments (item_id, id);

CREATE TABLE history (
    id      INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    author  TEXT NOT NULL,
    at      TEXT NOT NULL,
    field   TEXT NOT NULL,
    old     TEXT,
    new     TEXT
);
CREATE INDEX history_item ON history (item_id, id);

-- Full-text index, kept in step by triggers so every writer (CLI, TUI, sync) stays consistent.
CREATE VIRTUAL TABLE item_fts USING fts5 (
    title, body, comments, authors, tags,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
    INSERT INTO item_fts (rowid, title, body, comments, authors, tags)
    VALUES (new.id, new.title, new.body, '', coalesce(new.authors, ''), '');
END;
CREATE TRIGGER items_fts_update AFTER UPDATE OF title, body, authors ON items BEGIN
    UPDATE item_fts SET title = new.title, body = new.body, authors = coalesce(new.authors, '')
    WHERE rowid = new.id;
END;
CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
    DELETE FROM item_fts WHERE rowid = old.id;
END;
CREATE TRIGGER comments_fts_insert AFTER INSERT ON comments BEGIN
    UPDATE item_fts SET comments = comments || ' ' || new.body WHERE rowid = new.item_id;
END;
CREATE TRIGGER tags_fts_insert AFTER INSERT ON tags BEGIN
    UPDATE item_fts SET tags = (SELECT group_concat(tag, ' ') FROM tags WHERE item_id = new.item_id)
    WHERE rowid = new.item_id;
END;
CREATE TRIGGER tags_fts_delete AFTER DELETE ON tags BEGIN
    UPDATE item_fts SET tags = coalesce((SELECT group_concat(tag, ' ') FROM tags WHERE item_id = old.item_id), '')
    WHERE rowid = old.item_id;
END;

-- Runs: one training run of the engine (local, detached or remote).
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    experiment_id INTEGER REFERENCES items (id) ON DELETE SET NULL,
    name          TEXT,
    config        TEXT NOT NULL,
    config_path   TEXT,
    git_commit    TEXT,
    git_diff      TEXT,
    seed          INTEGER,
    backend       TEXT,
    device        TEXT,
    host          TEXT,
    status        TEXT NOT NULL CHECK (status IN
                    ('queued', 'queued-remote', 'running', 'succeeded', 'failed', 'cancelled', 'crashed')),
    author        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    heartbeat_at  TEXT,
    pid           INTEGER,
    steps_total   INTEGER,
    steps_done    INTEGER NOT NULL DEFAULT 0,
    final_metrics TEXT,
    error         TEXT,
    sweep         TEXT,
    remote        TEXT
);
CREATE INDEX runs_experiment ON runs (experiment_id);
CREATE INDEX runs_status ON runs (status);

-- Metric points; the key is interned to keep the table narrow and inserts fast.
CREATE TABLE metric_keys (
    id  INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE
);
CREATE TABLE metrics (
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key_id    INTEGER NOT NULL REFERENCES metric_keys (id),
    step      INTEGER NOT NULL,
    value     REAL,          -- NULL stands for a non-finite value
    wall_time REAL NOT NULL,
    PRIMARY KEY (run_id, key_id, step)
) WITHOUT ROWID;
