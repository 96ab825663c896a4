-- A channel's rollout plan (`worker-release rollout plan`, and every promote's first wave) and
-- its progress, as JSON, in the channel's row: opening a wave and signing the statement that
-- opens it are one write.
ALTER TABLE channels ADD COLUMN plan TEXT;
