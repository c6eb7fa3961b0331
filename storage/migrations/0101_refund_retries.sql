-- Refund retries (domain/tickets/refunds.py): a refund the provider could not take (network, 5xx,
-- rate limit) stays `pending` and is retried by a background loop on every node, with capped,
-- jittered backoff, under the same provider idempotency key (`refund:<id>`). A refusal the
-- provider will repeat (4xx) or too many attempts make it `failed`, with the reason shown to the
-- event's organizers (GET /api/events/{id}/refunds).
ALTER TABLE refunds
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    -- the request that created the refund makes the first attempt; the loop waits this long first
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now() + interval '30 seconds',
    ADD COLUMN last_error      text,
    ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now();
CREATE INDEX refunds_due ON refunds (next_attempt_at) WHERE status = 'pending';
