-- Check-in at the door: every scan (idempotent by nonce), one open entry per ticket, per-gate
-- counters, and change stamps for the offline check-in list.
--
-- Guarantees enforced HERE, whatever the application does:
-- - one answer per (event, nonce): UNIQUE (event_id, nonce) on checkin_scans; a retried scan
--   reads the stored answer;
-- - one check-in per ticket per entry: a partial UNIQUE index allows at most ONE open entry
--   (exited_at IS NULL) per ticket, so two gates scanning the same ticket at once cannot both
--   open an entry; re-entry after an exit opens a new row.
-- Lock order: checkin_scans (the nonce row) -> checkin_entries (the ticket's open entry) ->
-- checkin_gate_counts.

CREATE TABLE checkin_scans (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id      uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    nonce         text NOT NULL,
    fingerprint   bytea NOT NULL,          -- sha256 of (code, gate, direction): nonce reuse detection
    ticket_id     uuid,                    -- null when the code is not a ticket of this event
    gate          text NOT NULL,
    direction     text NOT NULL CHECK (direction IN ('in', 'out')),
    scanned_at    timestamptz NOT NULL,    -- the scanner's clock
    received_at   timestamptz NOT NULL DEFAULT now(),
    scanner_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    source        text NOT NULL CHECK (source IN ('online', 'offline')),
    result        text NOT NULL,
    response      jsonb NOT NULL,          -- the first answer, replayed for the same nonce
    superseded_by uuid,                    -- an earlier offline scan took this scan's entry over
    UNIQUE (event_id, nonce)
);
CREATE INDEX checkin_scans_ticket ON checkin_scans (ticket_id, scanned_at) WHERE ticket_id IS NOT NULL;

-- One row per stay inside: opened by an entry scan, closed by an exit scan. The entry's first scan
-- (entry_scan_id/gate/scanned_at/nonce) is the earliest one by (scanned_at, gate, nonce) among the
-- offline scans that claimed it (deterministic conflict resolution, docs/checkin.md).
CREATE TABLE checkin_entries (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id      uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    ticket_id     uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    entry_scan_id uuid NOT NULL,
    gate          text NOT NULL,
    scanned_at    timestamptz NOT NULL,
    nonce         text NOT NULL,
    exit_scan_id  uuid,
    exit_gate     text,
    exited_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    list_xid      xid8 NOT NULL DEFAULT pg_current_xact_id(),  -- check-in list delta stamp
    CHECK (exited_at IS NULL OR exited_at >= scanned_at)
);
CREATE UNIQUE INDEX checkin_entries_one_open ON checkin_entries (ticket_id) WHERE exited_at IS NULL;
CREATE INDEX checkin_entries_ticket ON checkin_entries (ticket_id, scanned_at);
CREATE INDEX checkin_entries_event ON checkin_entries (event_id, list_xid);

-- Live counts per gate, direction and result (exact, shared by every node).
CREATE TABLE checkin_gate_counts (
    event_id  uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    gate      text NOT NULL,
    direction text NOT NULL,
    result    text NOT NULL,
    n         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, gate, direction, result)
);

-- Delta stamps for the offline check-in list (`?since=`): the id of the transaction that last
-- wrote the row. A reader returns rows stamped at or after a cursor and hands out the xmin of its
-- snapshot as the next cursor: every later commit carries an id at or above it, so nothing is
-- ever missed (a few rows may be sent twice, which is harmless).
ALTER TABLE tickets ADD COLUMN list_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX tickets_event_list_xid ON tickets (event_id, list_xid);

CREATE FUNCTION foyer_stamp_list_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.list_xid := pg_current_xact_id();
    RETURN NEW;
END $$;

CREATE TRIGGER tickets_stamp_list_xid BEFORE UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION foyer_stamp_list_xid();
CREATE TRIGGER checkin_entries_stamp_list_xid BEFORE UPDATE ON checkin_entries
    FOR EACH ROW EXECUTE FUNCTION foyer_stamp_list_xid();
