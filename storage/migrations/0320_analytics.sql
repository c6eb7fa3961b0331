-- Analytics aggregates, maintained incrementally by outbox consumers (domain/analytics).
-- Each consumer applies an event and claims (consumer, event id) in relay_deliveries in ONE
-- transaction, so a redelivered event changes nothing and the figures survive restarts.
-- Requests read these tables only; they never scan orders, tickets or messages.

-- Sales per hour and ticket type. ticket_type_id '00000000-…' holds order-level amounts (refunds).
CREATE TABLE analytics_sales (
    event_id        uuid NOT NULL,
    bucket          timestamptz NOT NULL,          -- hour
    ticket_type_id  uuid NOT NULL,
    orders          integer NOT NULL DEFAULT 0,    -- confirmed/paid orders containing this type
    registrations   integer NOT NULL DEFAULT 0,    -- tickets confirmed (paid or free)
    cancelled       integer NOT NULL DEFAULT 0,    -- tickets of confirmed orders later cancelled/refunded
    revenue_cents   bigint NOT NULL DEFAULT 0,
    refunded_cents  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, bucket, ticket_type_id)
);

CREATE TABLE analytics_totals (
    event_id         uuid PRIMARY KEY,
    orders           integer NOT NULL DEFAULT 0,
    registrations    integer NOT NULL DEFAULT 0,
    revenue_cents    bigint NOT NULL DEFAULT 0,
    refunded_cents   bigint NOT NULL DEFAULT 0,
    currency         text NOT NULL DEFAULT '',
    tickets_issued   integer NOT NULL DEFAULT 0,
    checked_in       integer NOT NULL DEFAULT 0,   -- distinct tickets ever checked in
    messages         integer NOT NULL DEFAULT 0,
    questions        integer NOT NULL DEFAULT 0,
    votes            integer NOT NULL DEFAULT 0,
    visits           integer NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Arrivals and exits per 5 minutes per gate.
CREATE TABLE analytics_gate_traffic (
    event_id  uuid NOT NULL,
    gate      text NOT NULL,
    bucket    timestamptz NOT NULL,                -- 5 minutes
    arrivals  integer NOT NULL DEFAULT 0,
    exits     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, gate, bucket)
);
CREATE TABLE analytics_checked_in (                -- first check-in of each ticket (the rate's numerator)
    ticket_id  uuid PRIMARY KEY,
    event_id   uuid NOT NULL
);

-- Heat map: distinct people per session per 15 minutes (room joins and door scans).
CREATE TABLE analytics_attendance (
    event_id    uuid NOT NULL,
    session_id  uuid NOT NULL,
    bucket      timestamptz NOT NULL,              -- 15 minutes
    people      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, session_id, bucket)
);
CREATE TABLE analytics_attendance_seen (
    session_id  uuid NOT NULL,
    bucket      timestamptz NOT NULL,
    who         text NOT NULL,                     -- user id, or ticket:<id> for scans
    PRIMARY KEY (session_id, bucket, who)
);

-- Engagement per session (room-level facts without a session count under the nil session).
CREATE TABLE analytics_engagement (
    event_id      uuid NOT NULL,
    session_id    uuid NOT NULL,
    messages      integer NOT NULL DEFAULT 0,
    questions     integer NOT NULL DEFAULT 0,
    votes         integer NOT NULL DEFAULT 0,
    participants  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, session_id)
);
CREATE TABLE analytics_participants (
    event_id    uuid NOT NULL,
    session_id  uuid NOT NULL,
    user_id     uuid NOT NULL,
    PRIMARY KEY (event_id, session_id, user_id)
);
-- Who was active in which room lately ("live activity now": active in the last 5 minutes).
CREATE TABLE analytics_room_activity (
    event_id   uuid NOT NULL,
    room       text NOT NULL,
    user_id    uuid NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (event_id, room, user_id)
);
CREATE INDEX analytics_room_activity_recent ON analytics_room_activity (event_id, last_seen);
-- Messages per minute (live activity), kept for a day by the consumer's pruning.
CREATE TABLE analytics_minutes (
    event_id  uuid NOT NULL,
    minute    timestamptz NOT NULL,
    messages  integer NOT NULL DEFAULT 0,
    joins     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, minute)
);

-- Referral sources: visits, registrations and revenue per code ('' = direct).
CREATE TABLE analytics_referrals (
    event_id       uuid NOT NULL,
    code           text NOT NULL,
    channel        text NOT NULL DEFAULT '',
    visits         integer NOT NULL DEFAULT 0,
    registrations  integer NOT NULL DEFAULT 0,
    orders         integer NOT NULL DEFAULT 0,
    revenue_cents  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, code, channel)
);
-- Which referral an order came with (so its payment/refund moves the right code's revenue).
CREATE TABLE analytics_order_referrals (
    order_id  uuid PRIMARY KEY,
    event_id  uuid NOT NULL,
    code      text NOT NULL,
    channel   text NOT NULL DEFAULT ''
);

-- Feedback: count and rating histogram per session ('00000000-…' = the event itself).
CREATE TABLE analytics_feedback (
    event_id    uuid NOT NULL,
    session_id  uuid NOT NULL,
    responses   integer NOT NULL DEFAULT 0,
    rating_sum  integer NOT NULL DEFAULT 0,
    r1 integer NOT NULL DEFAULT 0, r2 integer NOT NULL DEFAULT 0, r3 integer NOT NULL DEFAULT 0,
    r4 integer NOT NULL DEFAULT 0, r5 integer NOT NULL DEFAULT 0,
    comments    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, session_id)
);
-- The rating each user currently gives (feedback is changeable: a change moves the histogram).
CREATE TABLE analytics_feedback_current (
    event_id     uuid NOT NULL,
    session_id   uuid NOT NULL,
    user_id      uuid NOT NULL,
    rating       smallint NOT NULL,
    has_comment  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (event_id, session_id, user_id)
);
