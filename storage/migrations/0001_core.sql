-- Foundation schema: accounts, events and their members, schedule, and the transactional outbox.
-- Ids are random UUIDs (not guessable, OWASP API1); timestamps are timestamptz in UTC.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- ---------------------------------------------------------------------------------------------
-- Accounts
-- ---------------------------------------------------------------------------------------------
CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email           text NOT NULL,
    name            text NOT NULL,
    password_hash   text NOT NULL,
    role            text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    -- 2FA: the secret is encrypted at rest (Fernet, see docs/security.md); last_totp_step makes
    -- every code single-use (RFC 6238 §5.2) across all nodes.
    totp_secret_enc bytea,
    totp_enabled    boolean NOT NULL DEFAULT false,
    last_totp_step  bigint,
    phone_enc       bytea,
    disabled_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE recovery_codes (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, code_hash)
);

-- Refresh tokens rotate on every use; a reused (already rotated) token revokes its whole family.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- ---------------------------------------------------------------------------------------------
-- Events and who may do what on them
-- ---------------------------------------------------------------------------------------------
CREATE TABLE events (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id         uuid NOT NULL REFERENCES users (id),
    slug             text NOT NULL UNIQUE,
    title            text NOT NULL,
    description      text NOT NULL DEFAULT '',
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    timezone         text NOT NULL DEFAULT 'UTC',
    venue            jsonb,
    cover_image_url  text,
    tags             text[] NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published', 'cancelled')),
    live_access      text NOT NULL DEFAULT 'ticket_holders'
                     CHECK (live_access IN ('public', 'ticket_holders', 'staff')),
    schedule_version bigint NOT NULL DEFAULT 0,
    published_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    search           tsvector GENERATED ALWAYS AS (
                        setweight(to_tsvector('simple', coalesce(title, '')), 'A') ||
                        setweight(to_tsvector('simple', coalesce(description, '')), 'B')) STORED,
    CHECK (ends_at > starts_at)
);
CREATE INDEX events_published_start ON events (starts_at, id) WHERE status = 'published';
CREATE INDEX events_tags ON events USING gin (tags);
CREATE INDEX events_search ON events USING gin (search);
CREATE INDEX events_owner ON events (owner_id);

-- A user's roles on an event. The owner is also stored here as an organizer.
-- 'staff' is the door-scanner role; 'attendee' is granted by holding a confirmed ticket.
CREATE TABLE event_members (
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('organizer', 'moderator', 'staff', 'attendee')),
    added_by   uuid REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, user_id, role)
);
CREATE INDEX event_members_user ON event_members (user_id);

-- ---------------------------------------------------------------------------------------------
-- Schedule
-- ---------------------------------------------------------------------------------------------
CREATE TABLE speakers (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    name       text NOT NULL,
    bio        text NOT NULL DEFAULT '',
    photo_url  text,
    links      jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX speakers_event ON speakers (event_id);

CREATE TABLE sessions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    title      text NOT NULL,
    abstract   text NOT NULL DEFAULT '',
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    room       text NOT NULL DEFAULT '',
    track      text NOT NULL DEFAULT '',
    capacity   integer CHECK (capacity IS NULL OR capacity > 0),
    status     text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'cancelled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    -- Two live sessions never overlap in the same room of an event (the database enforces it,
    -- whatever the application checked first).
    CONSTRAINT sessions_no_room_overlap EXCLUDE USING gist (
        event_id WITH =, room WITH =, tstzrange(starts_at, ends_at) WITH &&
    ) WHERE (status = 'scheduled' AND room <> '')
);
CREATE INDEX sessions_event_start ON sessions (event_id, starts_at);

CREATE TABLE session_speakers (
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    speaker_id uuid NOT NULL REFERENCES speakers (id) ON DELETE CASCADE,
    position   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, speaker_id)
);
CREATE INDEX session_speakers_speaker ON session_speakers (speaker_id);

CREATE TABLE agenda_items (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, session_id)
);
CREATE INDEX agenda_items_session ON agenda_items (session_id);

-- Every schedule change, versioned per event: clients sync with ?since=<version>.
CREATE TABLE schedule_changes (
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    version    bigint NOT NULL,
    entity     text NOT NULL CHECK (entity IN ('event', 'session', 'speaker')),
    entity_id  uuid NOT NULL,
    op         text NOT NULL CHECK (op IN ('created', 'updated', 'deleted')),
    changed_by uuid REFERENCES users (id) ON DELETE SET NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    data       jsonb,
    PRIMARY KEY (event_id, version)
);

-- ---------------------------------------------------------------------------------------------
-- Transactional outbox: every domain fact is written here in the transaction that makes it
-- true, then delivered after commit (in-process consumers, socket broadcasts, Kafka).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE outbox (
    seq          bigserial PRIMARY KEY,
    id           uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    type         text NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    event_id     uuid,
    key          text NOT NULL,
    data         jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL;
