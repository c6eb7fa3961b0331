-- Q&A per session: questions (optionally anonymous to attendees, never to moderators), one
-- upvote per user per question, an optional pre-moderation queue, one pinned question per
-- session, and an audit trail of every moderation action.

-- Per-session Q&A state. Its row is locked (FOR UPDATE) by every moderation action of the
-- session, which serialises pins (one pinned question at a time) and settings changes.
CREATE TABLE qa_sessions (
    session_id      uuid PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    event_id        uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    premoderation   boolean NOT NULL DEFAULT false,
    dismissed_count integer NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE questions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id   uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    event_id     uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id    text NOT NULL,
    text         text NOT NULL,
    anonymous    boolean NOT NULL DEFAULT false,
    -- pending: waits in the pre-moderation queue (moderators only); visible: attendees see it;
    -- dismissed: removed by a moderator (attendees see only the count)
    status       text NOT NULL CHECK (status IN ('pending', 'visible', 'dismissed')),
    approved_at  timestamptz,
    approved_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    answered_at  timestamptz,
    answered_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    pinned       boolean NOT NULL DEFAULT false,
    -- upvotes: the live count, kept in the transaction of each upvote; upvotes_sent: the count
    -- the last coalesced `qa:votes` room event carried (the difference marks what to send next)
    upvotes      integer NOT NULL DEFAULT 0 CHECK (upvotes >= 0),
    upvotes_sent integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    edited_at    timestamptz,
    -- a retried qa:ask with the same client_id returns the first question
    CONSTRAINT questions_client_id UNIQUE (session_id, user_id, client_id)
);
-- One pinned ("on stage") question per session, whatever the application checked first.
CREATE UNIQUE INDEX questions_one_pinned ON questions (session_id) WHERE pinned;
CREATE INDEX questions_session_votes ON questions (session_id, upvotes DESC, created_at DESC)
    WHERE status = 'visible';
CREATE INDEX questions_session_recent ON questions (session_id, created_at DESC) WHERE status = 'visible';
CREATE INDEX questions_pending ON questions (event_id, created_at) WHERE status = 'pending';
CREATE INDEX questions_votes_unsent ON questions (session_id) WHERE upvotes <> upvotes_sent;
CREATE INDEX questions_user ON questions (user_id);

-- One upvote per user per question: the primary key decides, so concurrent double-clicks on
-- two nodes count once.
CREATE TABLE question_upvotes (
    question_id uuid NOT NULL REFERENCES questions (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (question_id, user_id)
);
CREATE INDEX question_upvotes_user ON question_upvotes (user_id);

-- Who did what, when: every moderation action (approve, dismiss, answer, pin, settings).
CREATE TABLE qa_audit (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    question_id uuid REFERENCES questions (id) ON DELETE SET NULL,
    actor_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qa_audit_event ON qa_audit (event_id, id DESC);
