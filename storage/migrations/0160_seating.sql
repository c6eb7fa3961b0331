-- Reserved seating: a seat map per ticket type (sections, rows, seats) and seat assignments.
--
-- A seat is never sold twice: at most one ACTIVE assignment per (event, seat), a partial unique
-- index. Seated types still count seats in ticket_types.sold/held (the gate and the CHECK
-- constraints work unchanged); the seat map's capacity is the number of seats not blocked, and
-- every held/sold unit of a seated type has exactly one active assignment.
--
-- Seats come back exactly when counted inventory does, in the same transaction, by triggers:
-- an order leaving `held`/`paid`/`confirmed` for expired/cancelled/refunded releases its seats; a
-- ticket going valid -> void (partial refund) releases its seat. A late payment re-acquiring an
-- expired order re-activates its seats only if they are still free (domain/seating.py).
--
-- Lock order: orders -> ticket_types -> seat_assignments. Every writer that ACTIVATES assignments
-- of a type holds that type's row lock, so concurrent sales of one type cannot race on a seat.

CREATE TABLE seat_maps (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id       uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    ticket_type_id uuid NOT NULL UNIQUE REFERENCES ticket_types (id) ON DELETE CASCADE,
    name           text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX seat_maps_event ON seat_maps (event_id);

CREATE TABLE seat_sections (
    id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    map_id   uuid NOT NULL REFERENCES seat_maps (id) ON DELETE CASCADE,
    name     text NOT NULL,
    rank     integer NOT NULL DEFAULT 0,   -- lower is better (best-available starts there)
    position integer NOT NULL DEFAULT 0,
    UNIQUE (map_id, name)
);

CREATE TABLE seats (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id       uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    map_id         uuid NOT NULL REFERENCES seat_maps (id) ON DELETE CASCADE,
    ticket_type_id uuid NOT NULL REFERENCES ticket_types (id) ON DELETE CASCADE,
    section_id     uuid NOT NULL REFERENCES seat_sections (id) ON DELETE CASCADE,
    row_label      text NOT NULL,
    row_no         integer NOT NULL,       -- 0 = front row of the section
    seat_no        integer NOT NULL,       -- position along the row: consecutive numbers are adjacent
    label          text NOT NULL,
    blocked        boolean NOT NULL DEFAULT false,   -- not for sale (organizer)
    UNIQUE (section_id, row_no, seat_no),
    UNIQUE (section_id, row_label, label)
);
CREATE INDEX seats_type ON seats (ticket_type_id, section_id, row_no, seat_no);

CREATE TABLE seat_assignments (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id       uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    seat_id        uuid NOT NULL REFERENCES seats (id) ON DELETE CASCADE,
    order_id       uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    ticket_type_id uuid NOT NULL,
    seat_index     integer NOT NULL,       -- the seat_no of the ticket issued for this seat
    created_at     timestamptz NOT NULL DEFAULT now(),
    released_at    timestamptz
);
CREATE UNIQUE INDEX seat_assignments_one_active ON seat_assignments (event_id, seat_id) WHERE released_at IS NULL;
CREATE INDEX seat_assignments_order ON seat_assignments (order_id, ticket_type_id, seat_index);

CREATE FUNCTION foyer_release_order_seats() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE seat_assignments SET released_at = now() WHERE order_id = NEW.id AND released_at IS NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER orders_release_seats AFTER UPDATE OF status ON orders
    FOR EACH ROW WHEN (NEW.status IN ('expired', 'cancelled', 'refunded') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION foyer_release_order_seats();

CREATE FUNCTION foyer_release_ticket_seat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE seat_assignments SET released_at = now()
     WHERE order_id = NEW.order_id AND ticket_type_id = NEW.ticket_type_id AND seat_index = NEW.seat_no
       AND released_at IS NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER tickets_release_seat AFTER UPDATE OF status ON tickets
    FOR EACH ROW WHEN (OLD.status = 'valid' AND NEW.status = 'void')
    EXECUTE FUNCTION foyer_release_ticket_seat();
