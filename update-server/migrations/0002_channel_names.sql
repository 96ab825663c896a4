-- Channels exist only once created (`worker-release channel create`): a promote to a typo is
-- refused instead of opening a new channel. Every channel already stored stays created, and so
-- do the two every deployment starts with, `canary` and `stable` (the README's first commands
-- promote to them on a fresh server).
CREATE TABLE channel_names (
    name        TEXT    PRIMARY KEY,
    created_at  INTEGER NOT NULL
);
INSERT OR IGNORE INTO channel_names (name, created_at) SELECT channel, updated_at FROM channels;
INSERT OR IGNORE INTO channel_names (name, created_at) VALUES ('canary', 0), ('stable', 0);
