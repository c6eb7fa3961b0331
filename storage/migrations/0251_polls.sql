-- Polls per session or per event: single/multiple choice, rating scale, word cloud, quiz.
-- One vote per user per poll (primary key); results kept as counters, incrementally, in the
-- vote's transaction, so they are exact and survive restarts.

CREATE TABLE polls (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id     uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    session_id   uuid REFERENCES sessions (id) ON DELETE CASCADE,  -- NULL: an event-wide poll
    room         text NOT NULL,  -- session:<id> or event:<id>: where it is shown and voted
    kind         text NOT NULL CHECK (kind IN ('single', 'multiple', 'rating', 'word_cloud', 'quiz')),
    question     text NOT NULL,
    options      jsonb NOT NULL DEFAULT '[]'::jsonb,  -- [{id, text}] (choice kinds and quiz)
    correct      text[],  -- quiz: the correct option ids; never shown before the poll closes
    max_choices  integer,  -- multiple (and a quiz with several correct answers)
    scale_min    integer,  -- rating
    scale_max    integer,
    allow_change boolean NOT NULL DEFAULT false,  -- a voter may change their vote while open
    results      text NOT NULL DEFAULT 'live' CHECK (results IN ('live', 'after_close')),
    points       integer NOT NULL DEFAULT 1,  -- quiz: points for a correct answer
    state        text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'open', 'closed')),
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    opened_at    timestamptz,
    closed_at    timestamptz,
    CHECK ((session_id IS NULL) = (room LIKE 'event:%'))
);
CREATE INDEX polls_event ON polls (event_id, created_at);
CREATE INDEX polls_room_live ON polls (room) WHERE state <> 'draft';

-- One vote per user per poll: the primary key decides, whatever the nodes checked first.
-- `choices` is the vote as counter keys (option ids, the rating value, the normalized word),
-- sorted; a change replaces it and moves the counters in the same transaction.
CREATE TABLE poll_votes (
    poll_id    uuid NOT NULL REFERENCES polls (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  text NOT NULL,
    choices    text[] NOT NULL,
    score      integer,  -- quiz: set when the poll closes
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (poll_id, user_id)
);
CREATE INDEX poll_votes_user ON poll_votes (user_id);

-- Result counters, sharded so that thousands of votes for the same option do not queue on
-- one row lock: a vote updates the shard of its voter (hash of the user id). `key` '' counts
-- voters. Results are sum(n) per key.
CREATE TABLE poll_counts (
    poll_id uuid NOT NULL REFERENCES polls (id) ON DELETE CASCADE,
    key     text NOT NULL,
    shard   smallint NOT NULL,
    n       integer NOT NULL,
    PRIMARY KEY (poll_id, key, shard)
);
