"""Payments, refunds and applied provider webhook events in PostgreSQL.

One payment row per order (UNIQUE order_id): `ensure_payment` inserts or returns the existing
one, so concurrent or repeated payment starts converge on one intent. `record_event` is the
webhook dedupe: it inserts (provider, event id) inside the applying transaction, so an event is
applied at most once and, if the transaction fails, not at all.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from storage.db import Database

PAYMENT_COLUMNS = ("id, order_id, provider, intent_id, status, amount_cents, currency, refunded_cents, "
                   "client_secret, created_at, succeeded_at")


async def get_by_order(conn: Any, order_id: uuid.UUID, *, for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1"
                               + (" FOR UPDATE" if for_update else ""), order_id)


async def get_by_intent(conn: Any, provider: str, intent_id: str, *, for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE provider = $1 AND intent_id = $2"
                               + (" FOR UPDATE" if for_update else ""), provider, intent_id)


async def ensure_payment(conn: Any, *, order_id: uuid.UUID, provider: str, intent_id: str, amount_cents: int,
                         currency: str, client_secret: str | None) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""INSERT INTO payments (order_id, provider, intent_id, amount_cents, currency, client_secret)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id) DO NOTHING RETURNING {PAYMENT_COLUMNS}""",
        order_id, provider, intent_id, amount_cents, currency, client_secret)
    return row or await get_by_order(conn, order_id)


async def set_status(conn: Any, payment_id: uuid.UUID, status: str) -> None:
    await conn.execute(
        """UPDATE payments SET status = $2, updated_at = now(),
                  succeeded_at = CASE WHEN $2 = 'succeeded' THEN coalesce(succeeded_at, now()) ELSE succeeded_at END
            WHERE id = $1""", payment_id, status)


async def record_event(conn: asyncpg.Connection, provider: str, event_id: str, type_: str) -> bool:
    """True the first time (provider, event_id) is seen; False for a replay."""
    row = await conn.fetchrow(
        "INSERT INTO payment_events (provider, event_id, type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
        provider, event_id, type_)
    return row is not None


async def create_refund(conn: asyncpg.Connection, order_id: uuid.UUID, *, amount_cents: int, reason: str,
                        created_by: uuid.UUID | None) -> dict[str, Any]:
    """A pending refund row (and the payment's refunded total); the provider call follows commit."""
    payment = await get_by_order(conn, order_id, for_update=True)
    if payment is not None:
        await conn.execute(
            """UPDATE payments SET refunded_cents = least(amount_cents, refunded_cents + $2), updated_at = now(),
                      status = CASE WHEN refunded_cents + $2 >= amount_cents THEN 'refunded' ELSE status END
                WHERE id = $1""", payment["id"], amount_cents)
    refund_id = await conn.fetchval(
        """INSERT INTO refunds (order_id, payment_id, amount_cents, reason, created_by) VALUES ($1, $2, $3, $4, $5)
           RETURNING id""", order_id, payment["id"] if payment else None, amount_cents, reason, created_by)
    return {"id": refund_id, "order_id": order_id, "amount_cents": amount_cents,
            "intent_id": payment["intent_id"] if payment and payment["status"] != "pending" else None}


async def finish_refund(db: Database, refund_id: uuid.UUID, *, status: str, provider_refund_id: str | None) -> None:
    await db.execute("UPDATE refunds SET status = $2, provider_refund_id = coalesce($3, provider_refund_id) "
                     "WHERE id = $1", refund_id, status, provider_refund_id)


async def mark_refund_by_provider_id(conn: Any, provider_refund_id: str, status: str) -> None:
    await conn.execute("UPDATE refunds SET status = $2 WHERE provider_refund_id = $1", provider_refund_id, status)


# --- refund retries (domain/tickets/refunds.py) ----------------------------------------------------

REFUND_COLUMNS = ("r.id, r.order_id, o.event_id, r.amount_cents, r.reason, r.status, r.attempts, r.last_error, "
                  "r.provider_refund_id, r.created_at, r.updated_at, r.next_attempt_at")


async def claim_due_refunds(conn: asyncpg.Connection, *, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
    """Pending refunds whose next attempt is due, leased to the caller for `lease_seconds` (every
    node may call this at once: SKIP LOCKED, and the lease keeps the others off until it lapses)."""
    rows = await conn.fetch(
        """WITH due AS (SELECT id FROM refunds WHERE status = 'pending' AND next_attempt_at <= now()
                         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
           UPDATE refunds r SET next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
             FROM due WHERE r.id = due.id
           RETURNING r.id, r.order_id, r.amount_cents, r.attempts,
                     (SELECT CASE WHEN p.status <> 'pending' THEN p.intent_id END FROM payments p
                       WHERE p.id = r.payment_id) AS intent_id""", limit, float(lease_seconds))
    return [dict(r) for r in rows]


async def record_refund_attempt(db: Database, refund_id: uuid.UUID, *, status: str, error: str | None = None,
                                provider_refund_id: str | None = None, retry_in_seconds: float | None = None) -> bool:
    """One provider attempt's outcome for a still-pending refund (a webhook may have settled it)."""
    done = await db.fetchval(
        """UPDATE refunds SET status = $2, attempts = attempts + 1, last_error = $3,
                  provider_refund_id = coalesce($4, provider_refund_id), updated_at = now(),
                  next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at
                                         ELSE now() + make_interval(secs => $5::float8) END
            WHERE id = $1 AND status = 'pending' RETURNING 1""",
        refund_id, status, error, provider_refund_id, retry_in_seconds)
    return done is not None


async def fail_refund(conn: asyncpg.Connection, refund_id: uuid.UUID, reason: str) -> asyncpg.Record | None:
    """pending -> failed with the reason organizers see; the row (with its event) or None."""
    return await conn.fetchrow(
        """UPDATE refunds r SET status = 'failed', attempts = attempts + 1, last_error = $2, updated_at = now()
             FROM orders o WHERE r.id = $1 AND r.status = 'pending' AND o.id = r.order_id
           RETURNING r.id, r.order_id, o.event_id, r.amount_cents, r.attempts""", refund_id, reason)


async def list_refunds(conn: Any, event_id: uuid.UUID, *, status: str | None, limit: int = 500) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {REFUND_COLUMNS} FROM refunds r JOIN orders o ON o.id = r.order_id
             WHERE o.event_id = $1 AND ($2::text IS NULL OR r.status = $2)
             ORDER BY r.created_at DESC LIMIT $3""", event_id, status, limit)
