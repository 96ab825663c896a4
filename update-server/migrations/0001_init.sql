-- Root documents, by version: the rotation chain served at /api/worker-updates/root/<N>.json.
CREATE TABLE roots (
    version     INTEGER PRIMARY KEY,
    body        BLOB    NOT NULL,
    added_at    INTEGER NOT NULL
);

-- Signed release manifests, verified against the current root before insertion.
CREATE TABLE releases (
    version          TEXT    PRIMARY KEY,
    manifest_sha256  TEXT    NOT NULL,
    body             BLOB    NOT NULL,
    published_at     INTEGER NOT NULL
);

-- Artifacts stored under DATA_DIR/artifacts/<sha256>, verified against a stored release.
CREATE TABLE artifacts (
    sha256      TEXT    PRIMARY KEY,
    size        INTEGER NOT NULL,
    stored_at   INTEGER NOT NULL
);

-- Current state of each channel: the statement served, plus what the statement cannot carry.
CREATE TABLE channels (
    channel      TEXT    PRIMARY KEY,
    statement    BLOB    NOT NULL,
    rollback     BLOB,
    halt_reason  TEXT    NOT NULL DEFAULT '',
    updated_at   INTEGER NOT NULL
);

-- Every statement ever signed (serials only grow; the history proves it).
CREATE TABLE statements (
    channel     TEXT    NOT NULL,
    serial      INTEGER NOT NULL,
    body        BLOB    NOT NULL,
    signed_at   INTEGER NOT NULL,
    PRIMARY KEY (channel, serial)
);

-- Promotions, for the soak gate (how long has a version been on canary).
CREATE TABLE promotions (
    channel     TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    percent     INTEGER NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX promotions_by_version ON promotions (channel, version, at);

-- Fleet inventory.
CREATE TABLE workers (
    worker_id    TEXT    PRIMARY KEY,
    version      TEXT    NOT NULL,
    platform     TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    hostname     TEXT    NOT NULL DEFAULT '',
    task_types   TEXT    NOT NULL DEFAULT '[]',
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL
);

-- Update attempts reported by agents: the audit trail of the fleet.
CREATE TABLE reports (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id       TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    from_version    TEXT    NOT NULL,
    to_version      TEXT    NOT NULL,
    outcome         TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    duration_ms     INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    received_at     INTEGER NOT NULL
);
CREATE INDEX reports_by_release ON reports (channel, to_version, outcome);
CREATE INDEX reports_by_time ON reports (received_at);

-- Admin actions (publish, promote, halt, resume, rollback, auto_halt, root, resign).
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    channel   TEXT    NOT NULL DEFAULT '',
    version   TEXT    NOT NULL DEFAULT '',
    detail    TEXT    NOT NULL DEFAULT ''
);
