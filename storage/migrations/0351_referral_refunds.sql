-- Refunds of referred orders, once per refund fact (the outbox event that reported it).
CREATE TABLE referral_refunds (
    source_event_id uuid PRIMARY KEY,
    order_id        uuid NOT NULL REFERENCES referral_conversions (order_id) ON DELETE CASCADE,
    refunded_cents  bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referral_refunds_order ON referral_refunds (order_id);
