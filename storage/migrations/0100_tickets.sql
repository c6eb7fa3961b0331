-- Ticketing: ticket types and shared quotas, orders with holds, payments, tickets, per-event signing
-- keys, and generic HTTP idempotency records.
--
-- Oversell protection lives HERE, not in Python or Redis: every counter row carries
-- CHECK (sold + held <= capacity), and the application changes counters only with conditional
-- UPDATEs inside the transaction that writes the matching order/ticket rows. Whatever any cache
-- believes, PostgreSQL refuses the write that would oversell.
--
-- Lock order (every writer follows it, so no deadlocks): orders (by id) -> ticket_types (by id)
-- -> ticket_quotas (by id).

-- Shared quota over several ticket types ("all early-bird types together <= 200").
CREATE TABLE ticket_quotas (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    name       text NOT NULL,
    capacity   integer NOT NULL CHECK (capacity >= 0),
    sold       integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
    held       integer NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ticket_quotas_no_oversell CHECK (sold + held <= capacity)
);
CREATE INDEX ticket_quotas_event ON ticket_quotas (event_id);

CREATE TABLE ticket_types (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id         uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    name             text NOT NULL,
    description      text NOT NULL DEFAULT '',
    kind             text NOT NULL DEFAULT 'general'
                     CHECK (kind IN ('general', 'vip', 'early_bird', 'free', 'donation')),
    price_cents      bigint NOT NULL CHECK (price_cents >= 0),  -- integer minor units
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    capacity         integer NOT NULL CHECK (capacity >= 0),
    sold             integer NOT NULL DEFAULT 0 CHECK (sold >= 0),   -- paid or free-confirmed seats
    held             integer NOT NULL DEFAULT 0 CHECK (held >= 0),   -- seats of unexpired holds
    min_per_order    integer NOT NULL DEFAULT 1 CHECK (min_per_order >= 1),
    max_per_order    integer NOT NULL DEFAULT 10,
    sale_starts_at   timestamptz,
    sale_ends_at     timestamptz,
    visibility       text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'hidden')),
    access_code_hash bytea,        -- hidden types: sha256 of the access code
    quota_id         uuid REFERENCES ticket_quotas (id) ON DELETE SET NULL,
    position         integer NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ticket_types_no_oversell CHECK (sold + held <= capacity),
    CHECK (max_per_order >= min_per_order),
    CHECK (sale_ends_at IS NULL OR sale_starts_at IS NULL OR sale_ends_at > sale_starts_at),
    CHECK (kind <> 'free' OR price_cents = 0),
    CHECK (visibility = 'public' OR access_code_hash IS NOT NULL)
);
CREATE INDEX ticket_types_event ON ticket_types (event_id, position);
CREATE INDEX ticket_types_quota ON ticket_types (quota_id) WHERE quota_id IS NOT NULL;

-- held      : seats counted in ticket_types.held until expires_at
-- paid      : payment captured; seats counted in sold; tickets issued
-- confirmed : free order, confirmed at once; seats in sold; tickets issued
-- expired   : hold lapsed; seats returned (exactly once: the held -> expired transition)
-- cancelled : cancelled by buyer (while held) or organizer; seats returned
-- refunded  : fully refunded; seats returned, tickets void
CREATE TABLE orders (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id        uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id),
    status          text NOT NULL
                    CHECK (status IN ('held', 'paid', 'confirmed', 'expired', 'cancelled', 'refunded')),
    total_cents     bigint NOT NULL CHECK (total_cents >= 0),
    currency        text NOT NULL,
    refunded_cents  bigint NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
    expires_at      timestamptz,
    idempotency_key text,          -- the Idempotency-Key it was placed with (see idempotency_keys)
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    paid_at         timestamptz,
    closed_at       timestamptz,   -- expired / cancelled / refunded
    CHECK (refunded_cents <= total_cents),
    CHECK (status <> 'held' OR expires_at IS NOT NULL)
);
CREATE INDEX orders_held_expiry ON orders (expires_at) WHERE status = 'held';
CREATE INDEX orders_event ON orders (event_id, created_at);
CREATE INDEX orders_user ON orders (user_id, created_at);

CREATE TABLE order_items (
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    ticket_type_id   uuid NOT NULL REFERENCES ticket_types (id),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, ticket_type_id)
);
CREATE INDEX order_items_type ON order_items (ticket_type_id);

-- One ticket per seat of a paid/confirmed order. (order_id, ticket_type_id, seat_no) is unique, so
-- issuing twice is impossible; seat_no < quantity is checked by the issuing transaction.
CREATE TABLE tickets (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id       uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    order_id       uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    ticket_type_id uuid NOT NULL REFERENCES ticket_types (id),
    seat_no        integer NOT NULL CHECK (seat_no >= 0),
    holder_id      uuid NOT NULL REFERENCES users (id),
    status         text NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'void')),
    generation     integer NOT NULL DEFAULT 1,     -- bumped on transfer: older codes are void
    code           text NOT NULL UNIQUE,
    price_cents    bigint NOT NULL DEFAULT 0,
    issued_at      timestamptz NOT NULL DEFAULT now(),
    voided_at      timestamptz,
    UNIQUE (order_id, ticket_type_id, seat_no)
);
CREATE INDEX tickets_holder ON tickets (holder_id, issued_at);
CREATE INDEX tickets_event ON tickets (event_id);

CREATE TABLE ticket_transfers (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ticket_id     uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    from_user_id  uuid NOT NULL REFERENCES users (id),
    to_user_id    uuid NOT NULL REFERENCES users (id),
    old_code      text NOT NULL,
    generation    integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ticket_transfers_ticket ON ticket_transfers (ticket_id);

-- Per-event Ed25519 key pair; the private key is encrypted at rest (FieldCipher).
CREATE TABLE event_ticket_keys (
    event_id        uuid PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    key_id          text NOT NULL,
    public_key      bytea NOT NULL,
    private_key_enc bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- One payment per order, whatever the retries (UNIQUE order_id; the provider idempotency key is
-- derived from the order id).
CREATE TABLE payments (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id       uuid NOT NULL UNIQUE REFERENCES orders (id) ON DELETE CASCADE,
    provider       text NOT NULL,
    intent_id      text NOT NULL,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded')),
    amount_cents   bigint NOT NULL CHECK (amount_cents >= 0),
    currency       text NOT NULL,
    refunded_cents bigint NOT NULL DEFAULT 0,
    client_secret  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    succeeded_at   timestamptz,
    UNIQUE (provider, intent_id),
    CHECK (refunded_cents <= amount_cents)
);

CREATE TABLE refunds (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id     uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    payment_id   uuid REFERENCES payments (id),
    provider_refund_id text,
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    reason       text NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    created_by   uuid REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_order ON refunds (order_id);

-- Provider webhook events already applied (dedupe by provider event id).
CREATE TABLE payment_events (
    provider    text NOT NULL,
    event_id    text NOT NULL,
    type        text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

-- Generic HTTP idempotency (storage/idempotency.py): the first response to (scope, principal, key)
-- is kept and replayed. `state` is 'in_progress' while the first request runs.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    principal    text NOT NULL,
    key          text NOT NULL,
    fingerprint  bytea NOT NULL,
    state        text NOT NULL CHECK (state IN ('in_progress', 'done')),
    status_code  integer,
    response     bytea,
    locked_until timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, principal, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
