-- Support and feedback requests users send to the operators (POST /api/support), handled by admins.
CREATE TABLE support_requests (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid REFERENCES users (id) ON DELETE SET NULL,
    kind        text NOT NULL CHECK (kind IN ('support', 'feedback', 'bug', 'account')),
    subject     text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    body        text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 5000),
    event_id    uuid REFERENCES events (id) ON DELETE SET NULL,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz,
    closed_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    close_note  text
);
CREATE INDEX support_requests_open ON support_requests (status, created_at DESC);
CREATE INDEX support_requests_user ON support_requests (user_id, created_at DESC);
