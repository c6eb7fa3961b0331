-- Waiting room: per ticket type, whether buyers must queue for the on-sale, and how fast they
-- are admitted. The line itself lives in Redis (storage/queue.py): it can be lost with Redis,
-- and rebuilds itself from the signed queue tokens that buyers hold (their join time is in them).

CREATE TABLE queue_configs (
    ticket_type_id   uuid PRIMARY KEY REFERENCES ticket_types (id) ON DELETE CASCADE,
    event_id         uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    enabled          boolean NOT NULL DEFAULT true,
    admit_per_minute integer NOT NULL CHECK (admit_per_minute > 0),
    grant_seconds    integer NOT NULL CHECK (grant_seconds > 0),
    max_per_ip       integer NOT NULL DEFAULT 0 CHECK (max_per_ip >= 0),   -- 0: no limit
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_configs_event ON queue_configs (event_id) WHERE enabled;
