-- Outbox relay bookkeeping (server/relay.py, docs/events.md "Delivery semantics").
--
-- Ordering: rows are delivered in (txid, seq) order, where txid is the id of the transaction
-- that wrote the row. A relay only reads rows whose transaction is finished
-- (txid < pg_snapshot_xmin(pg_current_snapshot())), so a transaction that took seq 10 but
-- commits after the one that took seq 11 is never skipped: sequence order alone would lose it.
ALTER TABLE outbox ADD COLUMN txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX outbox_txid_seq ON outbox (txid, seq);
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- One row per delivery stream: each in-process consumer (by its stable name) and `kafka`.
-- The stream's cursor is the (txid, seq) of the last row it finished; a lease (owner,
-- lease_until) makes one node at a time work on a stream.
CREATE TABLE relay_streams (
    name        text PRIMARY KEY,
    last_txid   bigint NOT NULL DEFAULT 0,
    last_seq    bigint NOT NULL DEFAULT 0,
    owner       text,
    lease_until timestamptz,
    attempts    integer NOT NULL DEFAULT 0,   -- failed attempts at the stream's next event
    last_error  text,
    delivered   bigint NOT NULL DEFAULT 0,    -- events delivered, all time
    seen_at     timestamptz NOT NULL DEFAULT now(),  -- a node running this stream's code was alive
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- (consumer, outbox event id) once the consumer's handle returned: a redelivery is skipped.
-- Consumers that write to PostgreSQL may also claim a pair inside their own transaction
-- (storage.relay.claim_once) for an exactly-once effect.
CREATE TABLE relay_deliveries (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX relay_deliveries_age ON relay_deliveries (delivered_at);

-- Events a consumer gave up on after its bounded retries (a poison event must not stall a stream).
CREATE TABLE relay_dead_letters (
    consumer    text NOT NULL,
    event_id    uuid NOT NULL,
    seq         bigint NOT NULL,
    type        text NOT NULL,
    attempts    integer NOT NULL,
    error       text NOT NULL,
    envelope    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retried_at  timestamptz,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX relay_dead_letters_created ON relay_dead_letters (created_at DESC);
