-- Live rooms: the per-room event log (the durable side of every seq'd room event), chat,
-- reactions, moderation state and reports.
--
-- Room names are `event:<uuid>`, `session:<uuid>`, `staff:<uuid>` (an event id), `user:<uuid>`.

-- One row per room: its monotonic event counter and settings. `seq` is taken with
-- `UPDATE ... SET seq = seq + 1` inside the transaction that writes the event, so seqs are
-- gapless (a rolled-back transaction rolls the counter back too) and commit order equals seq
-- order (the row lock serialises writers of one room until commit).
CREATE TABLE live_rooms (
    room              text PRIMARY KEY,
    event_id          uuid REFERENCES events (id) ON DELETE CASCADE,
    seq               bigint NOT NULL DEFAULT 0,
    slow_mode_seconds integer NOT NULL DEFAULT 0 CHECK (slow_mode_seconds BETWEEN 0 AND 3600),
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX live_rooms_event ON live_rooms (event_id);

-- Every seq'd room event, durable before any client sees it. The Redis stream is a bounded
-- cache of this log; nodes fill gaps from here. `dedupe_key` makes at-least-once producers
-- (outbox consumers) idempotent. `data` holds the event payload without `room` and `seq`.
CREATE TABLE room_events (
    room       text NOT NULL REFERENCES live_rooms (room) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    event      text NOT NULL,
    data       jsonb NOT NULL,
    actor_id   uuid,
    dedupe_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, seq)
);
CREATE UNIQUE INDEX room_events_dedupe ON room_events (room, dedupe_key) WHERE dedupe_key IS NOT NULL;

CREATE TABLE chat_messages (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    room       text NOT NULL REFERENCES live_rooms (room) ON DELETE CASCADE,
    seq        bigint NOT NULL DEFAULT 0,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  text NOT NULL,
    text       text NOT NULL,
    reply_to   uuid REFERENCES chat_messages (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    edited_at  timestamptz,
    deleted_at timestamptz,
    deleted_by uuid REFERENCES users (id) ON DELETE SET NULL,
    -- a retried chat:send with the same client_id returns the first result
    CONSTRAINT chat_messages_client_id UNIQUE (room, user_id, client_id)
);
CREATE INDEX chat_messages_room_seq ON chat_messages (room, seq DESC) WHERE deleted_at IS NULL;
CREATE INDEX chat_messages_user ON chat_messages (user_id);

CREATE TABLE chat_reactions (
    message_id uuid NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, emoji, user_id)
);

-- Mutes (may not post) and bans (may not join) per room; `until` NULL means indefinitely.
CREATE TABLE room_sanctions (
    room       text NOT NULL REFERENCES live_rooms (room) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('mute', 'ban')),
    until      timestamptz,
    reason     text NOT NULL DEFAULT '',
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, user_id, kind)
);

CREATE TABLE chat_reports (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    room        text NOT NULL REFERENCES live_rooms (room) ON DELETE CASCADE,
    message_id  uuid NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    reporter_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reason      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    resolved_by uuid REFERENCES users (id) ON DELETE SET NULL,
    UNIQUE (message_id, reporter_id)
);
CREATE INDEX chat_reports_open ON chat_reports (room, created_at) WHERE resolved_at IS NULL;
