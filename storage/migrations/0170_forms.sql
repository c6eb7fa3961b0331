-- Registration forms: questions per event (optionally only for some ticket types) and the
-- answers given at order time (one row per order, for every ticket of it) or edited later by a
-- ticket's holder (one row per ticket, which then wins over the order's row).

CREATE TABLE form_questions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id        uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    label           text NOT NULL,
    help            text NOT NULL DEFAULT '',
    kind            text NOT NULL
                    CHECK (kind IN ('text', 'number', 'single_choice', 'multiple_choice', 'checkbox', 'date')),
    required        boolean NOT NULL DEFAULT false,
    options         jsonb NOT NULL DEFAULT '[]',     -- choices (single/multiple choice)
    ticket_type_ids uuid[] NOT NULL DEFAULT '{}',    -- shown for these types; empty = every type
    min_value       double precision,
    max_value       double precision,
    max_length      integer,
    position        integer NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX form_questions_event ON form_questions (event_id, position);

CREATE TABLE form_answers (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id   uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    order_id   uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    ticket_id  uuid REFERENCES tickets (id) ON DELETE CASCADE,   -- null: the order's answers
    user_id    uuid NOT NULL REFERENCES users (id),               -- who gave them
    answers    jsonb NOT NULL,                                     -- {question id: value}
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX form_answers_one_per_order ON form_answers (order_id) WHERE ticket_id IS NULL;
CREATE UNIQUE INDEX form_answers_one_per_ticket ON form_answers (ticket_id) WHERE ticket_id IS NOT NULL;
CREATE INDEX form_answers_event ON form_answers (event_id);
