"""Settings of ticket sales: holds, the Redis inventory gate, group commit, payments, the waiting room."""

from __future__ import annotations

from dataclasses import dataclass

from config.fields import Secret, SettingsError, setting


@dataclass(frozen=True, slots=True)
class TicketSettings:
    hold_seconds: int = setting(600, help="How long a held order keeps its seats while the buyer pays.")
    max_tickets_per_order: int = setting(
        50, help="Upper bound on seats in one order, whatever a ticket type allows (OWASP API4/API6)."
    )
    # Group commit: one PostgreSQL transaction per batch of buyers' holds per node. A few ms of
    # waiting removes most of the per-commit fsync and row-lock cost (docs/ticketing.md).
    order_batch_max: int = setting(256, help="Most holds committed together in one PostgreSQL transaction.")
    order_batch_window_ms: float = setting(
        2.0, help="How long the hold batcher waits for more buyers after the first one, in milliseconds."
    )
    sale_cache_seconds: float = setting(
        2.0, help="In-process cache of events' ticket types and sale state, so sold_out needs no database."
    )
    # Per-node memory of a `sold_out` answer, dropped by pub/sub as soon as seats come back
    # (storage/soldout.py); the TTL only bounds a lost invalidation. 0 turns it off.
    sold_out_cache_ms: float = setting(
        1000.0, help="How long a node answers sold_out from memory after the gate said so (pub/sub invalidated)."
    )
    gate_reconcile_interval_seconds: float = setting(
        10.0, help="How often the gate is compared with PostgreSQL; a drift seen twice in a row is repaired."
    )
    test_hold_commit_delay_ms: float = setting(
        0.0, help="Tests only: wait this long between admitting holds and committing them (0: off)."
    )
    # Refunds the provider could not take are retried with capped, jittered backoff under the same
    # idempotency key (domain/tickets/refunds.py); a refusal or too many attempts fails them.
    refund_retry_interval_seconds: float = setting(
        5.0, help="How often every node looks for pending refunds whose next attempt is due."
    )
    refund_max_attempts: int = setting(
        10, help="Provider attempts before a refund that keeps failing transiently is marked failed."
    )
    refund_backoff_base_seconds: float = setting(
        2.0, help="Delay before the second attempt of a refund; doubles per attempt (jittered)."
    )
    refund_backoff_cap_seconds: float = setting(900.0, help="Longest delay between two attempts of a refund.")
    hold_sweep_interval_seconds: float = setting(
        1.0, help="How often every node returns the seats of expired holds (SKIP LOCKED, exactly once)."
    )
    payments_provider: str = setting("sandbox", help="Payment provider: `sandbox` or `stripe`.")
    payments_sandbox_mount: bool = setting(
        False, help="Serve the sandbox payment processor inside this node under /sandbox (demo, load tests)."
    )
    payments_sandbox_url: str = setting(
        "", help="Base URL of the sandbox processor. Empty: this node's own /sandbox mount."
    )
    payments_sandbox_secret: Secret = setting(
        Secret(""), secret=True,
        help="Sandbox API key and webhook signing secret. Empty: derived from the JWT secret (all nodes agree).",
    )
    payments_sandbox_webhook_url: str = setting(
        "", help="Where the mounted sandbox sends webhooks. Empty: this node's /api/payments/webhooks/sandbox."
    )
    stripe_api_key: Secret = setting(Secret(""), secret=True, help="Stripe secret API key (sk_...).")
    stripe_webhook_secret: Secret = setting(
        Secret(""), secret=True, help="Stripe webhook endpoint signing secret (whsec_...)."
    )
    stripe_api_base: str = setting(
        "https://api.stripe.com", help="Stripe API base URL (point at a Stripe-compatible server in tests)."
    )
    payments_webhook_tolerance_seconds: int = setting(
        300, help="Webhook signatures older than this are rejected (replay window; Stripe's default)."
    )

    def validate(self) -> None:
        if not 1 <= self.hold_seconds <= 86400:
            raise SettingsError("FOYER_HOLD_SECONDS: must be between 1 and 86400")
        if not 1 <= self.order_batch_max <= 5000:
            raise SettingsError("FOYER_ORDER_BATCH_MAX: must be between 1 and 5000")
        if not 0 <= self.order_batch_window_ms <= 1000:
            raise SettingsError("FOYER_ORDER_BATCH_WINDOW_MS: must be between 0 and 1000")
        if not 0.05 <= self.gate_reconcile_interval_seconds <= 3600:
            raise SettingsError("FOYER_GATE_RECONCILE_INTERVAL_SECONDS: must be between 0.05 and 3600")
        if not 0.01 <= self.refund_retry_interval_seconds <= 3600:
            raise SettingsError("FOYER_REFUND_RETRY_INTERVAL_SECONDS: must be between 0.01 and 3600")
        if not 1 <= self.refund_max_attempts <= 100:
            raise SettingsError("FOYER_REFUND_MAX_ATTEMPTS: must be between 1 and 100")
        if not 0 < self.refund_backoff_base_seconds <= self.refund_backoff_cap_seconds:
            raise SettingsError("FOYER_REFUND_BACKOFF_BASE_SECONDS: must be > 0 and at most the cap")
        if not 0 <= self.test_hold_commit_delay_ms <= 600_000:
            raise SettingsError("FOYER_TEST_HOLD_COMMIT_DELAY_MS: must be between 0 and 600000")
        if not 0 <= self.sold_out_cache_ms <= 60_000:
            raise SettingsError("FOYER_SOLD_OUT_CACHE_MS: must be between 0 and 60000")
        if self.payments_provider not in ("sandbox", "stripe"):
            raise SettingsError("FOYER_PAYMENTS_PROVIDER: must be `sandbox` or `stripe`")
        if self.max_tickets_per_order < 1:
            raise SettingsError("FOYER_MAX_TICKETS_PER_ORDER: must be at least 1")

    # --- the door (check-in, waiting room, seating, forms, reports; docs/checkin.md) -------------
    queue_tick_ms: int = setting(
        250, help="How often every node runs the waiting-room admitter (the rate itself is global, per queue)."
    )
    queue_grant_seconds: int = setting(
        600, help="Default time an admitted buyer has to place a hold before the access grant expires."
    )
    queue_max_per_ip: int = setting(
        50, help="Default places per client IP in one queue (0: no limit); venues put many buyers behind one NAT."
    )
    queue_polls_per_minute: int = setting(
        120, help="Queue joins and position polls per account per minute (0: no limit); bots get rate_limited."
    )
