-- Email becomes a queue like push: consumers enqueue one row per (fact, recipient) with what to
-- build (`spec`), and a worker on every node claims due rows (SKIP LOCKED + lease), builds, sends
-- and retries with backoff. This keeps SMTP outages and big audiences out of the outbox relay
-- (whose consumers must finish within its handler timeout and attempt budget).
ALTER TABLE email_deliveries
    ADD COLUMN spec jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN not_before timestamptz NOT NULL DEFAULT now(),
    ALTER COLUMN state SET DEFAULT 'pending',
    ALTER COLUMN attempts SET DEFAULT 0,
    DROP CONSTRAINT email_deliveries_state_check,
    ADD CONSTRAINT email_deliveries_state_check
        CHECK (state IN ('pending', 'sending', 'sent', 'retry', 'failed'));
CREATE INDEX email_deliveries_due ON email_deliveries (not_before) WHERE state = 'pending';
CREATE INDEX email_deliveries_finished ON email_deliveries (created_at) WHERE state <> 'pending';
