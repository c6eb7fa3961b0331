"""Referral codes, share-page visits, attributions and conversions.

Guarantees:
- A user has one code per event, a campaign name one code per event (partial unique indexes);
  `user_code`/`campaign_code` return the existing code when called twice, also concurrently.
- A visit is stored once per (event, day, visitor, code): `record_visit` returns False for a
  repeat, so the visit feed counts unique visitors per day per source.
- A conversion is stored once per order (`record_conversion` returns False for a repeat), so a
  redelivered `ticket.issued` never counts twice.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date

import asyncpg

_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o/1/l/i: codes are read aloud and typed


def new_code(length: int = 8) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


async def _insert_code(conn: asyncpg.Connection, sql: str, *args: object) -> str | None:
    for _ in range(5):  # a random-code collision is astronomically rare; retry anyway (in a savepoint)
        try:
            async with conn.transaction():
                return await conn.fetchval(sql, new_code(), *args)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "referral_codes_pkey":
                raise
    raise RuntimeError("could not allocate a referral code")


async def user_code(conn: asyncpg.Connection, *, event_id: uuid.UUID, user_id: uuid.UUID) -> str:
    code = await _insert_code(
        conn,
        """INSERT INTO referral_codes (code, event_id, user_id, created_by) VALUES ($1, $2, $3, $3)
           ON CONFLICT (event_id, user_id) WHERE user_id IS NOT NULL DO NOTHING RETURNING code""",
        event_id, user_id,
    )
    if code is not None:
        return code
    return await conn.fetchval("SELECT code FROM referral_codes WHERE event_id = $1 AND user_id = $2",
                               event_id, user_id)


async def campaign_code(conn: asyncpg.Connection, *, event_id: uuid.UUID, campaign: str,
                        created_by: uuid.UUID) -> tuple[str, bool]:
    """(code, created)."""
    code = await _insert_code(
        conn,
        """INSERT INTO referral_codes (code, event_id, campaign, created_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (event_id, campaign) WHERE campaign IS NOT NULL DO NOTHING RETURNING code""",
        event_id, campaign, created_by,
    )
    if code is not None:
        return code, True
    existing = await conn.fetchval("SELECT code FROM referral_codes WHERE event_id = $1 AND campaign = $2",
                                   event_id, campaign)
    return existing, False


async def code_row(conn: asyncpg.Connection | asyncpg.Pool, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT code, event_id, user_id, campaign FROM referral_codes WHERE code = $1", code)


async def codes_with_stats(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every code of the event with unique daily visits, registrations (orders) and revenue."""
    return await conn.fetch(
        """SELECT c.code, c.campaign, c.user_id, u.name AS user_name, c.created_at,
                  (SELECT count(*) FROM referral_visits v WHERE v.event_id = c.event_id AND v.code = c.code) AS visits,
                  (SELECT count(*) FROM referral_conversions k WHERE k.code = c.code) AS registrations,
                  coalesce((SELECT jsonb_object_agg(currency, total) FROM (
                      SELECT currency, sum(amount_cents) AS total FROM referral_conversions k
                       WHERE k.code = c.code AND amount_cents > 0 GROUP BY currency) r), '{}'::jsonb) AS revenue
             FROM referral_codes c LEFT JOIN users u ON u.id = c.user_id
            WHERE c.event_id = $1
            ORDER BY c.campaign NULLS LAST, c.created_at""",
        event_id,
    )


async def record_visit(conn: asyncpg.Connection | asyncpg.Pool, *, event_id: uuid.UUID, day: date,
                       visitor_hash: bytes, code: str, channel: str) -> bool:
    status = await conn.execute(
        """INSERT INTO referral_visits (event_id, day, visitor_hash, code, channel) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT DO NOTHING""",
        event_id, day, visitor_hash, code, channel,
    )
    return status == "INSERT 0 1"


async def attribute(conn: asyncpg.Connection | asyncpg.Pool, *, event_id: uuid.UUID, user_id: uuid.UUID,
                    code: str, channel: str) -> None:
    """Remember the referral a user arrived with (the latest one wins)."""
    await conn.execute(
        """INSERT INTO referral_attributions (event_id, user_id, code, channel) VALUES ($1, $2, $3, $4)
           ON CONFLICT (event_id, user_id) DO UPDATE
              SET code = EXCLUDED.code, channel = EXCLUDED.channel, attributed_at = now()""",
        event_id, user_id, code, channel,
    )


async def attribution(conn: asyncpg.Connection | asyncpg.Pool, *, event_id: uuid.UUID, user_id: uuid.UUID,
                      window_days: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT a.code, a.channel, c.user_id AS referrer_id, c.campaign
             FROM referral_attributions a JOIN referral_codes c ON c.code = a.code
            WHERE a.event_id = $1 AND a.user_id = $2
              AND a.attributed_at > now() - make_interval(days => $3)""",
        event_id, user_id, window_days,
    )


async def order_amount(conn: asyncpg.Connection | asyncpg.Pool, order_id: uuid.UUID) -> asyncpg.Record | None:
    """Total and currency of an order (ticketing's table, read-only)."""
    return await conn.fetchrow("SELECT total_cents, currency, user_id, event_id FROM orders WHERE id = $1", order_id)


async def record_conversion(conn: asyncpg.Connection, *, order_id: uuid.UUID, event_id: uuid.UUID,
                            user_id: uuid.UUID, code: str, channel: str, amount_cents: int, currency: str) -> bool:
    status = await conn.execute(
        """INSERT INTO referral_conversions (order_id, event_id, user_id, code, channel, amount_cents, currency)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id) DO NOTHING""",
        order_id, event_id, user_id, code, channel, amount_cents, currency,
    )
    return status == "INSERT 0 1"


async def conversion(conn: asyncpg.Connection | asyncpg.Pool, order_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM referral_conversions WHERE order_id = $1", order_id)


async def event_by_slug(conn: asyncpg.Connection | asyncpg.Pool, slug: str) -> asyncpg.Record | None:
    """A publicly visible event (published, or cancelled after publishing) by slug."""
    return await conn.fetchrow(
        """SELECT id, slug, title, description, starts_at, ends_at, timezone, venue, cover_image_url, tags, status,
                  updated_at
             FROM events
            WHERE slug = $1 AND (status = 'published' OR (status = 'cancelled' AND published_at IS NOT NULL))""",
        slug,
    )


async def record_refund(conn: asyncpg.Connection, *, source_event_id: uuid.UUID, order_id: uuid.UUID,
                        refunded_cents: int) -> bool:
    """Once per refund fact (the outbox event id), so a redelivered refund is not counted twice."""
    status = await conn.execute(
        """INSERT INTO referral_refunds (source_event_id, order_id, refunded_cents) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        source_event_id, order_id, refunded_cents,
    )
    return status == "INSERT 0 1"
