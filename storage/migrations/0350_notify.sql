-- Notify: push devices and preferences, the push queue, email delivery log, reminders and
-- feedback prompts, account tokens (password reset, email verification, calendar feeds),
-- calendar SEQUENCE bookkeeping, referral codes/visits/attributions, feedback.

-- ---------------------------------------------------------------------------------------------
-- Push
-- ---------------------------------------------------------------------------------------------
-- A device token belongs to one user at a time: registering it again (any user) moves it.
CREATE TABLE devices (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform     text NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    token        text NOT NULL UNIQUE CHECK (char_length(token) BETWEEN 1 AND 4096),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_user ON devices (user_id, last_seen_at);

-- Absent row = defaults (domain/notify/preferences.py).
CREATE TABLE notification_preferences (
    user_id         uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    push_kinds      text[] NOT NULL,
    email_kinds     text[] NOT NULL,
    in_app_and_push boolean NOT NULL DEFAULT false,
    quiet_start     time,
    quiet_end       time,
    timezone        text NOT NULL DEFAULT 'UTC',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

-- One row per (notification, device): exactly one FCM send each, retried with backoff.
-- `dedupe_key` names the notification (outbox event id + user), so a redelivered outbox event
-- never enqueues twice. Workers on every node claim due rows with FOR UPDATE SKIP LOCKED and a
-- lease (`claimed_until`), so a crashed worker's rows become due again.
CREATE TABLE push_messages (
    id            bigserial PRIMARY KEY,
    dedupe_key    text NOT NULL,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id     uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    not_before    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'sent', 'failed', 'expired')),
    claimed_until timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    UNIQUE (dedupe_key, device_id)
);
CREATE INDEX push_messages_due ON push_messages (not_before) WHERE state = 'pending';
CREATE INDEX push_messages_finished ON push_messages (finished_at) WHERE state <> 'pending';

-- ---------------------------------------------------------------------------------------------
-- Email: one row per (outbox event, recipient); `sent` rows are never sent again.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE email_deliveries (
    dedupe_key    text PRIMARY KEY,
    kind          text NOT NULL,
    user_id       uuid REFERENCES users (id) ON DELETE SET NULL,
    state         text NOT NULL DEFAULT 'sending' CHECK (state IN ('sending', 'sent', 'retry', 'failed')),
    attempts      integer NOT NULL DEFAULT 1,
    claimed_until timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz
);

-- ---------------------------------------------------------------------------------------------
-- Reminders and feedback prompts: a row is the exclusive claim that the notification was
-- scheduled (inserted once, whatever the number of nodes scanning).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE session_reminders (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    starts_at  timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, starts_at, user_id)
);

CREATE TABLE session_feedback_prompts (
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    ends_at    timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, ends_at)
);

CREATE INDEX sessions_upcoming ON sessions (starts_at) WHERE status = 'scheduled';
CREATE INDEX sessions_ending ON sessions (ends_at) WHERE status = 'scheduled';

-- ---------------------------------------------------------------------------------------------
-- Account tokens: only SHA-256 hashes are stored; raw tokens exist only in the email sent.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE account_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
    email      text NOT NULL,
    request_id uuid NOT NULL UNIQUE,  -- the outbox event that asked for it: one token per request
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);

CREATE TABLE email_verifications (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email       text NOT NULL,
    verified_at timestamptz NOT NULL DEFAULT now()
);

-- Personal agenda feeds (/cal/{token}.ics): one secret per user, rotatable, revocable.
CREATE TABLE calendar_feeds (
    user_id         uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    token_hash      bytea NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_fetched_at timestamptz
);

-- iCalendar SEQUENCE per UID: bumped whenever the rendered fields' fingerprint changes.
CREATE TABLE calendar_sequences (
    uid         text PRIMARY KEY,
    sequence    integer NOT NULL DEFAULT 0,
    fingerprint bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Referrals
-- ---------------------------------------------------------------------------------------------
CREATE TABLE referral_codes (
    code       text PRIMARY KEY,
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id    uuid REFERENCES users (id) ON DELETE CASCADE,
    campaign   text CHECK (campaign IS NULL OR char_length(campaign) BETWEEN 1 AND 80),
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((user_id IS NULL) <> (campaign IS NULL))
);
CREATE UNIQUE INDEX referral_codes_user ON referral_codes (event_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX referral_codes_campaign ON referral_codes (event_id, campaign) WHERE campaign IS NOT NULL;

-- One row per visitor per day per (event, code): `code` '' is a direct visit.
CREATE TABLE referral_visits (
    event_id      uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    day           date NOT NULL,
    visitor_hash  bytea NOT NULL,
    code          text NOT NULL,
    channel       text NOT NULL DEFAULT '',
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, day, visitor_hash, code)
);
CREATE INDEX referral_visits_code ON referral_visits (code);

-- The referral a signed-in user arrived with (last touch within the window wins).
CREATE TABLE referral_attributions (
    event_id      uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code          text NOT NULL REFERENCES referral_codes (code) ON DELETE CASCADE,
    channel       text NOT NULL DEFAULT '',
    attributed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, user_id)
);

-- One conversion per order (registrations and revenue per referral source).
CREATE TABLE referral_conversions (
    order_id     uuid PRIMARY KEY,
    event_id     uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    code         text NOT NULL,
    channel      text NOT NULL DEFAULT '',
    amount_cents bigint NOT NULL DEFAULT 0,
    currency     text NOT NULL DEFAULT '',
    converted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referral_conversions_code ON referral_conversions (code);

-- ---------------------------------------------------------------------------------------------
-- Feedback: one rating per user per session, and one per user for the event (session_id NULL).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE feedback (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    session_id uuid REFERENCES sessions (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rating     smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment    text CHECK (comment IS NULL OR char_length(comment) <= 2000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX feedback_session_once ON feedback (session_id, user_id) WHERE session_id IS NOT NULL;
CREATE UNIQUE INDEX feedback_event_once ON feedback (event_id, user_id) WHERE session_id IS NULL;
CREATE INDEX feedback_event ON feedback (event_id, session_id);
