-- Rollout plans read a channel's workers from the store (replicas share it): by channel.
CREATE INDEX IF NOT EXISTS workers_by_channel ON workers (channel);
