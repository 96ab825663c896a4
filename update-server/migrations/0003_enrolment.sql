-- Per-worker enrolment (issue 12 item 4): join tokens made by an operator
-- (`worker-release enroll-token`), each worker's own credential, and which artifacts each
-- enrolled worker downloaded. Only SHA-256 hashes of the secrets are stored.
CREATE TABLE enroll_tokens (
    id            TEXT    PRIMARY KEY,
    token_sha256  TEXT    NOT NULL UNIQUE,
    -- The channel the workers it enrols must follow ('' = any).
    channel       TEXT    NOT NULL DEFAULT '',
    max_uses      INTEGER NOT NULL,
    uses          INTEGER NOT NULL DEFAULT 0,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    revoked_at    INTEGER
);

CREATE TABLE worker_credentials (
    worker_id      TEXT    PRIMARY KEY,
    secret_sha256  TEXT    NOT NULL UNIQUE,
    channel        TEXT    NOT NULL DEFAULT '',
    token_id       TEXT    NOT NULL,
    enrolled_at    INTEGER NOT NULL,
    revoked_at     INTEGER
);

-- An artifact an enrolled worker fetched with its credential: only the reports of a worker
-- that downloaded a release count towards auto-halt and the stable gate.
CREATE TABLE artifact_downloads (
    worker_id  TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (worker_id, sha256)
);
CREATE INDEX artifact_downloads_by_time ON artifact_downloads (at);

-- Whether a report counts towards auto-halt and the stable gate (1 for every report made
-- before enrolment existed, and for the shared worker token's).
ALTER TABLE reports ADD COLUMN counted INTEGER NOT NULL DEFAULT 1;
