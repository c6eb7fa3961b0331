"""Notify storage: preferences, the email queue, recipients, reminder claims, calendar, orders.

Guarantees:
- Email queue: one row per (fact, recipient) under a unique dedupe key, so a redelivered outbox
  event never emails twice; `claim_emails` hands due rows to one worker at a time (SKIP LOCKED +
  lease), like the push queue in storage/devices.py.
- Reminders/prompts: `claim_due_reminders` / `claim_feedback_prompts` insert their claim rows
  with ON CONFLICT DO NOTHING inside the caller's transaction: however many nodes scan at once,
  each (session, start time, user) reminder is claimed exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from domain.notify.preferences import Preferences

# --- preferences -----------------------------------------------------------------------------


def _prefs(user_id: uuid.UUID, r: asyncpg.Record | None) -> Preferences:
    if r is None:
        return Preferences(user_id=user_id)
    return Preferences(
        user_id=user_id, push_kinds=frozenset(r["push_kinds"]), email_kinds=frozenset(r["email_kinds"]),
        in_app_and_push=r["in_app_and_push"], quiet_start=r["quiet_start"], quiet_end=r["quiet_end"],
        timezone=r["timezone"], stored=True,
    )


async def get_preferences(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> Preferences:
    row = await conn.fetchrow("SELECT * FROM notification_preferences WHERE user_id = $1", user_id)
    return _prefs(user_id, row)


async def get_preferences_many(
    conn: asyncpg.Connection | asyncpg.Pool, user_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Preferences]:
    rows = await conn.fetch("SELECT * FROM notification_preferences WHERE user_id = ANY($1::uuid[])", list(user_ids))
    found = {r["user_id"]: _prefs(r["user_id"], r) for r in rows}
    return {u: found.get(u) or Preferences(user_id=u) for u in user_ids}


async def put_preferences(conn: asyncpg.Connection | asyncpg.Pool, p: Preferences) -> None:
    await conn.execute(
        """INSERT INTO notification_preferences
               (user_id, push_kinds, email_kinds, in_app_and_push, quiet_start, quiet_end, timezone)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (user_id) DO UPDATE SET
               push_kinds = EXCLUDED.push_kinds, email_kinds = EXCLUDED.email_kinds,
               in_app_and_push = EXCLUDED.in_app_and_push, quiet_start = EXCLUDED.quiet_start,
               quiet_end = EXCLUDED.quiet_end, timezone = EXCLUDED.timezone, updated_at = now()""",
        p.user_id, sorted(p.push_kinds), sorted(p.email_kinds), p.in_app_and_push, p.quiet_start, p.quiet_end,
        p.timezone,
    )


# --- email queue -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailRow:
    dedupe_key: str
    kind: str
    user_id: uuid.UUID | None
    spec: dict[str, Any]  # what to build at send time: {"builder": name, ...}


@dataclass(frozen=True, slots=True)
class ClaimedEmail:
    dedupe_key: str
    kind: str
    user_id: uuid.UUID | None
    spec: dict[str, Any]
    attempts: int  # including this one


async def enqueue_email(conn: asyncpg.Connection | asyncpg.Pool, rows: Sequence[EmailRow]) -> int:
    """Queue emails; a dedupe key seen before (sent, failed or queued) is ignored. Returns how many are new."""
    if not rows:
        return 0
    status = await conn.execute(
        """INSERT INTO email_deliveries (dedupe_key, kind, user_id, spec)
           SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::jsonb[])
           ON CONFLICT (dedupe_key) DO NOTHING""",
        [r.dedupe_key for r in rows], [r.kind for r in rows], [r.user_id for r in rows], [r.spec for r in rows],
    )
    return int(status.split()[-1])


async def claim_emails(conn: asyncpg.Connection | asyncpg.Pool, *, limit: int, lease_seconds: float) -> list[ClaimedEmail]:
    rows = await conn.fetch(
        """WITH due AS (
               SELECT dedupe_key FROM email_deliveries
                WHERE state = 'pending' AND not_before <= now()
                  AND (claimed_until IS NULL OR claimed_until < now())
                ORDER BY not_before LIMIT $1
                FOR UPDATE SKIP LOCKED)
           UPDATE email_deliveries e
              SET claimed_until = now() + make_interval(secs => $2), attempts = e.attempts + 1
             FROM due WHERE e.dedupe_key = due.dedupe_key
        RETURNING e.dedupe_key, e.kind, e.user_id, e.spec, e.attempts""",
        limit, lease_seconds,
    )
    return [ClaimedEmail(dedupe_key=r["dedupe_key"], kind=r["kind"], user_id=r["user_id"], spec=r["spec"],
                         attempts=r["attempts"]) for r in rows]


async def finish_email(conn: asyncpg.Connection | asyncpg.Pool, dedupe_key: str, *, state: str,
                       error: str | None = None) -> None:
    await conn.execute(
        """UPDATE email_deliveries SET state = $2, last_error = $3, claimed_until = NULL,
                  sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END
            WHERE dedupe_key = $1""",
        dedupe_key, state, error,
    )


async def retry_email(conn: asyncpg.Connection | asyncpg.Pool, dedupe_key: str, *, delay: float, error: str) -> None:
    await conn.execute(
        """UPDATE email_deliveries
              SET not_before = now() + make_interval(secs => $2), claimed_until = NULL, last_error = $3
            WHERE dedupe_key = $1""",
        dedupe_key, delay, error,
    )


async def next_email_due(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    return await conn.fetchval(
        "SELECT min(greatest(not_before, coalesce(claimed_until, not_before))) FROM email_deliveries "
        "WHERE state = 'pending'"
    )


async def purge_finished_email(conn: asyncpg.Connection | asyncpg.Pool, *, older_than_days: int) -> int:
    status = await conn.execute(
        "DELETE FROM email_deliveries WHERE state <> 'pending' AND created_at < now() - make_interval(days => $1)",
        older_than_days,
    )
    return int(status.split()[-1])


# --- recipients ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: uuid.UUID
    email: str
    name: str


_RECIPIENT = "u.id AS user_id, u.email, u.name"


def _recipients(rows: Sequence[asyncpg.Record]) -> list[Recipient]:
    return [Recipient(user_id=r["user_id"], email=r["email"], name=r["name"]) for r in rows]


async def users_by_ids(conn: asyncpg.Connection | asyncpg.Pool, user_ids: Sequence[uuid.UUID]) -> list[Recipient]:
    rows = await conn.fetch(
        f"SELECT {_RECIPIENT} FROM users u WHERE u.id = ANY($1::uuid[]) AND u.disabled_at IS NULL", list(user_ids)
    )
    return _recipients(rows)


async def session_audience(conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID) -> list[Recipient]:
    """Users who bookmarked the session."""
    rows = await conn.fetch(
        f"""SELECT {_RECIPIENT} FROM agenda_items a JOIN users u ON u.id = a.user_id
             WHERE a.session_id = $1 AND u.disabled_at IS NULL""",
        session_id,
    )
    return _recipients(rows)


async def event_audience(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID) -> list[Recipient]:
    """Attendees (ticket holders) of the event plus anyone who bookmarked one of its sessions."""
    rows = await conn.fetch(
        f"""SELECT {_RECIPIENT} FROM users u
             WHERE u.disabled_at IS NULL AND u.id IN (
                   SELECT m.user_id FROM event_members m WHERE m.event_id = $1 AND m.role = 'attendee'
                   UNION
                   SELECT a.user_id FROM agenda_items a JOIN sessions s ON s.id = a.session_id
                    WHERE s.event_id = $1)""",
        event_id,
    )
    return _recipients(rows)


async def session_with_event(conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT s.id, s.event_id, s.title, s.abstract, s.starts_at, s.ends_at, s.room, s.track, s.status,
                  s.updated_at, e.title AS event_title, e.slug AS event_slug, e.timezone, e.venue,
                  e.status AS event_status
             FROM sessions s JOIN events e ON e.id = s.event_id WHERE s.id = $1""",
        session_id,
    )


async def event_row(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, owner_id, slug, title, description, starts_at, ends_at, timezone, venue, cover_image_url,
                  tags, status, published_at, updated_at
             FROM events WHERE id = $1""",
        event_id,
    )


# --- reminders and feedback prompts ----------------------------------------------------------


async def claim_due_reminders(conn: asyncpg.Connection, *, lead_seconds: int, limit: int) -> list[asyncpg.Record]:
    """Claim reminders of bookmarked sessions starting within `lead_seconds` (not yet started).

    Returns (session_id, event_id, starts_at, user_id) rows newly claimed by this call. Must run
    in the transaction that also records what to send, so a claim never outlives a rollback.
    """
    return await conn.fetch(
        """INSERT INTO session_reminders (user_id, session_id, starts_at)
           SELECT a.user_id, s.id, s.starts_at
             FROM sessions s
             JOIN events e ON e.id = s.event_id AND e.status = 'published'
             JOIN agenda_items a ON a.session_id = s.id
            WHERE s.status = 'scheduled'
              AND s.starts_at > now() AND s.starts_at <= now() + make_interval(secs => $1)
            ORDER BY s.starts_at
            LIMIT $2
           ON CONFLICT DO NOTHING
        RETURNING session_id, starts_at, user_id""",
        lead_seconds, limit,
    )


async def claim_feedback_prompts(conn: asyncpg.Connection, *, window_seconds: int, limit: int) -> list[asyncpg.Record]:
    """Claim sessions that ended within the window; returns (session_id, ends_at) newly claimed."""
    return await conn.fetch(
        """INSERT INTO session_feedback_prompts (session_id, ends_at)
           SELECT s.id, s.ends_at
             FROM sessions s JOIN events e ON e.id = s.event_id AND e.status = 'published'
            WHERE s.status = 'scheduled'
              AND s.ends_at <= now() AND s.ends_at > now() - make_interval(secs => $1)
            ORDER BY s.ends_at
            LIMIT $2
           ON CONFLICT DO NOTHING
        RETURNING session_id, ends_at""",
        window_seconds, limit,
    )


# --- rate limits (Redis) ---------------------------------------------------------------------


async def hit_counter(redis: aioredis.Redis, key: str, *, window_seconds: int) -> int:
    """Fixed-window counter: increments `key` and returns the count in the current window."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=window_seconds, nx=True)
        pipe.incr(key)
        _, count = await pipe.execute()
    return int(count)


async def session_attendees(conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID) -> list[uuid.UUID]:
    """Users who bookmarked the session and hold a ticket for its event (they may give feedback)."""
    rows = await conn.fetch(
        """SELECT a.user_id FROM agenda_items a
             JOIN sessions s ON s.id = a.session_id
             JOIN event_members m ON m.event_id = s.event_id AND m.user_id = a.user_id AND m.role = 'attendee'
             JOIN users u ON u.id = a.user_id AND u.disabled_at IS NULL
            WHERE a.session_id = $1""",
        session_id,
    )
    return [r["user_id"] for r in rows]


# --- calendar --------------------------------------------------------------------------------

_CAL_SESSION = """s.id, s.event_id, s.title, s.abstract, s.starts_at, s.ends_at, s.room, s.track, s.status,
                  s.updated_at, e.title AS event_title, e.slug AS event_slug, e.timezone, e.venue,
                  e.status AS event_status,
                  coalesce(array(SELECT sp.name FROM session_speakers ss JOIN speakers sp ON sp.id = ss.speaker_id
                                  WHERE ss.session_id = s.id ORDER BY ss.position, sp.name), '{}') AS speakers"""


async def event_sessions(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {_CAL_SESSION} FROM sessions s JOIN events e ON e.id = s.event_id
             WHERE s.event_id = $1 ORDER BY s.starts_at, s.id""",
        event_id,
    )


async def agenda_sessions(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> list[asyncpg.Record]:
    """Bookmarked sessions of publicly visible events (published, or cancelled after publishing)."""
    return await conn.fetch(
        f"""SELECT {_CAL_SESSION} FROM agenda_items a
              JOIN sessions s ON s.id = a.session_id
              JOIN events e ON e.id = s.event_id
             WHERE a.user_id = $1
               AND (e.status = 'published' OR (e.status = 'cancelled' AND e.published_at IS NOT NULL))
             ORDER BY s.starts_at, s.id""",
        user_id,
    )


async def calendar_sequences(conn: asyncpg.Connection | asyncpg.Pool,
                             items: Sequence[tuple[str, bytes]]) -> dict[str, int]:
    """SEQUENCE per UID, bumped once whenever the item's fingerprint differs from the last one seen.

    Rows are touched in UID order (no deadlocks between concurrent renders); a concurrent render of
    the same change waits for the first and then sees the new fingerprint, so it bumps only once.
    """
    if not items:
        return {}
    ordered = sorted(dict(items).items())
    uids = [u for u, _ in ordered]
    await conn.execute(
        """INSERT INTO calendar_sequences (uid, fingerprint)
           SELECT * FROM unnest($1::text[], $2::bytea[])
           ON CONFLICT (uid) DO UPDATE
              SET sequence = calendar_sequences.sequence + 1, fingerprint = EXCLUDED.fingerprint, updated_at = now()
            WHERE calendar_sequences.fingerprint <> EXCLUDED.fingerprint""",
        uids, [f for _, f in ordered],
    )
    rows = await conn.fetch("SELECT uid, sequence FROM calendar_sequences WHERE uid = ANY($1::text[])", uids)
    return {r["uid"]: r["sequence"] for r in rows}


# --- orders (ticketing's tables, read-only) --------------------------------------------------

async def order_for_email(conn: asyncpg.Connection | asyncpg.Pool, order_id: uuid.UUID) -> dict[str, Any] | None:
    """The order, its lines and its valid tickets, as the confirmation email shows them."""
    order = await conn.fetchrow(
        """SELECT o.id, o.event_id, o.user_id, o.status, o.total_cents, o.currency,
                  u.email, u.name, u.disabled_at
             FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = $1""",
        order_id,
    )
    if order is None:
        return None
    items = await conn.fetch(
        """SELECT t.name, i.quantity, i.unit_price_cents FROM order_items i
             JOIN ticket_types t ON t.id = i.ticket_type_id WHERE i.order_id = $1 ORDER BY t.position, t.name""",
        order_id,
    )
    tickets = await conn.fetch(
        """SELECT k.id, k.code, t.name AS type_name, h.name AS holder
             FROM tickets k JOIN ticket_types t ON t.id = k.ticket_type_id JOIN users h ON h.id = k.holder_id
            WHERE k.order_id = $1 AND k.status = 'valid' ORDER BY t.position, k.seat_no""",
        order_id,
    )
    return {"order": dict(order), "items": [dict(i) for i in items], "tickets": [dict(t) for t in tickets]}


async def session_event_ids(conn: asyncpg.Connection | asyncpg.Pool,
                            session_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    rows = await conn.fetch("SELECT id, event_id FROM sessions WHERE id = ANY($1::uuid[])", list(session_ids))
    return {r["id"]: r["event_id"] for r in rows}
