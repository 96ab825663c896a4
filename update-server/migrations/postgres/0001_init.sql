-- The PostgreSQL schema: the same tables as the SQLite migrations 0001-0003 (roots, releases,
-- artifacts, channels, statement history, promotions, workers, reports, audit, channel names,
-- enrolment), in PostgreSQL types. Versions of this directory are tracked in
-- `schema_migrations`, independently of SQLite's `PRAGMA user_version`.

CREATE TABLE roots (
    version     BIGINT  PRIMARY KEY,
    body        BYTEA   NOT NULL,
    added_at    BIGINT  NOT NULL
);

-- `seq`: insertion order, the tie-break of releases published in the same second (SQLite's rowid).
CREATE TABLE releases (
    version          TEXT    PRIMARY KEY,
    manifest_sha256  TEXT    NOT NULL,
    body             BYTEA   NOT NULL,
    published_at     BIGINT  NOT NULL,
    seq              BIGINT  GENERATED ALWAYS AS IDENTITY
);

CREATE TABLE artifacts (
    sha256      TEXT    PRIMARY KEY,
    size        BIGINT  NOT NULL,
    stored_at   BIGINT  NOT NULL
);

CREATE TABLE channels (
    channel      TEXT    PRIMARY KEY,
    statement    BYTEA   NOT NULL,
    rollback     BYTEA,
    halt_reason  TEXT    NOT NULL DEFAULT '',
    updated_at   BIGINT  NOT NULL
);

-- Every statement ever signed: the primary key makes a serial impossible to sign twice, even
-- by two replicas racing.
CREATE TABLE statements (
    channel     TEXT    NOT NULL,
    serial      BIGINT  NOT NULL,
    body        BYTEA   NOT NULL,
    signed_at   BIGINT  NOT NULL,
    PRIMARY KEY (channel, serial)
);

CREATE TABLE promotions (
    channel     TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    percent     INTEGER NOT NULL,
    at          BIGINT  NOT NULL
);
CREATE INDEX promotions_by_version ON promotions (channel, version, at);

CREATE TABLE workers (
    worker_id    TEXT    PRIMARY KEY,
    version      TEXT    NOT NULL,
    platform     TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    hostname     TEXT    NOT NULL DEFAULT '',
    task_types   TEXT    NOT NULL DEFAULT '[]',
    first_seen   BIGINT  NOT NULL,
    last_seen    BIGINT  NOT NULL
);

CREATE TABLE reports (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    worker_id       TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    from_version    TEXT    NOT NULL,
    to_version      TEXT    NOT NULL,
    outcome         TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    duration_ms     BIGINT  NOT NULL,
    at              BIGINT  NOT NULL,
    received_at     BIGINT  NOT NULL,
    counted         BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX reports_by_release ON reports (channel, to_version, outcome);
CREATE INDEX reports_by_time ON reports (received_at);

CREATE TABLE audit (
    id        BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT  NOT NULL,
    kind      TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    channel   TEXT    NOT NULL DEFAULT '',
    version   TEXT    NOT NULL DEFAULT '',
    detail    TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE channel_names (
    name        TEXT    PRIMARY KEY,
    created_at  BIGINT  NOT NULL
);
INSERT INTO channel_names (name, created_at) VALUES ('canary', 0), ('stable', 0);

CREATE TABLE enroll_tokens (
    id            TEXT    PRIMARY KEY,
    token_sha256  TEXT    NOT NULL UNIQUE,
    channel       TEXT    NOT NULL DEFAULT '',
    max_uses      BIGINT  NOT NULL,
    uses          BIGINT  NOT NULL DEFAULT 0,
    expires_at    BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    created_by    TEXT    NOT NULL,
    revoked_at    BIGINT
);

CREATE TABLE worker_credentials (
    worker_id      TEXT    PRIMARY KEY,
    secret_sha256  TEXT    NOT NULL UNIQUE,
    channel        TEXT    NOT NULL DEFAULT '',
    token_id       TEXT    NOT NULL,
    enrolled_at    BIGINT  NOT NULL,
    revoked_at     BIGINT
);

CREATE TABLE artifact_downloads (
    worker_id  TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    at         BIGINT  NOT NULL,
    PRIMARY KEY (worker_id, sha256)
);
CREATE INDEX artifact_downloads_by_time ON artifact_downloads (at);
