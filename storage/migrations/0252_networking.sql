-- Networking: an opt-in attendee directory per event, connection requests, blocks. One-to-one
-- chat once accepted runs in the room `dm:<connection id>` (chat_messages / room_events).

-- Present only while the attendee opts in; opting out deletes the row.
CREATE TABLE directory_entries (
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text NOT NULL DEFAULT '',
    company    text NOT NULL DEFAULT '',
    interests  text[] NOT NULL DEFAULT '{}',
    bio        text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, user_id)
);
CREATE INDEX directory_entries_interests ON directory_entries USING gin (interests);

-- One connection per pair of users per event, whichever asked first (user_lo < user_hi is the
-- pair in canonical order): duplicates are impossible, a mutual request accepts the first.
-- `silenced`: sent to someone who blocks the requester — kept so that the requester sees no
-- difference, never shown to the addressee.
CREATE TABLE connections (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id     uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    requester_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    addressee_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_lo      uuid NOT NULL,
    user_hi      uuid NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'declined')),
    message      text NOT NULL DEFAULT '',
    silenced     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    responded_at timestamptz,
    CHECK (requester_id <> addressee_id),
    CHECK (user_lo = least(requester_id, addressee_id) AND user_hi = greatest(requester_id, addressee_id)),
    UNIQUE (event_id, user_lo, user_hi)
);
CREATE INDEX connections_requester ON connections (requester_id, event_id);
CREATE INDEX connections_addressee ON connections (addressee_id, event_id);

-- Blocks are personal and global (not per event): a block hides each from the other's
-- directory, refuses requests and messages both ways, and is never revealed to the blocked user.
CREATE TABLE user_blocks (
    blocker_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
CREATE INDEX user_blocks_blocked ON user_blocks (blocked_id);
