"""Notify storage: preferences, the push queue, email delivery claims, recipients, reminder claims.

Guarantees:
- Push queue: `enqueue_push` inserts one row per (notification, device) and ignores duplicates,
  so an outbox event delivered twice never pushes twice. `claim_push` hands each due row to one
  worker at a time (FOR UPDATE SKIP LOCKED + a lease); a worker that dies loses its lease and the
  row becomes due again (at-least-once towards FCM, bounded by the lease).
- Email: `claim_email` returns False when a (event, recipient) email was already sent or is
  being sent under a live lease, so one outbox event yields one email per recipient.
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


# --- push queue ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushRow:
    user_id: uuid.UUID
    device_id: uuid.UUID
    not_before: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClaimedPush:
    id: int
    user_id: uuid.UUID
    device_id: uuid.UUID
    token: str
    platform: str
    kind: str
    payload: dict[str, Any]
    attempts: int  # including this one


async def enqueue_push(conn: asyncpg.Connection, *, dedupe_key: str, kind: str, payload: dict[str, Any],
                       rows: Sequence[PushRow]) -> int:
    """Insert queue rows (duplicates ignored); returns how many were new."""
    if not rows:
        return 0
    status = await conn.execute(
        """INSERT INTO push_messages (dedupe_key, user_id, device_id, kind, payload, not_before, expires_at)
           SELECT $1, u, d, $2, $3, coalesce(nb, now()), ex
             FROM unnest($4::uuid[], $5::uuid[], $6::timestamptz[], $7::timestamptz[]) AS t(u, d, nb, ex)
           ON CONFLICT (dedupe_key, device_id) DO NOTHING""",
        dedupe_key, kind, payload,
        [r.user_id for r in rows], [r.device_id for r in rows], [r.not_before for r in rows],
        [r.expires_at for r in rows],
    )
    return int(status.split()[-1])


async def claim_push(conn: asyncpg.Connection | asyncpg.Pool, *, limit: int, lease_seconds: float) -> list[ClaimedPush]:
    """Claim up to `limit` due messages for this worker (one statement, so it commits at once)."""
    rows = await conn.fetch(
        """WITH due AS (
               SELECT id FROM push_messages
                WHERE state = 'pending' AND not_before <= now()
                  AND (claimed_until IS NULL OR claimed_until < now())
                ORDER BY not_before LIMIT $1
                FOR UPDATE SKIP LOCKED)
           UPDATE push_messages p
              SET claimed_until = now() + make_interval(secs => $2), attempts = p.attempts + 1
             FROM due, devices d
            WHERE p.id = due.id AND d.id = p.device_id
        RETURNING p.id, p.user_id, p.device_id, d.token, d.platform, p.kind, p.payload, p.attempts, p.expires_at""",
        limit, lease_seconds,
    )
    claimed: list[ClaimedPush] = []
    expired: list[int] = []
    for r in rows:
        if r["expires_at"] is not None and r["expires_at"] <= datetime.now(r["expires_at"].tzinfo):
            expired.append(r["id"])
            continue
        claimed.append(ClaimedPush(id=r["id"], user_id=r["user_id"], device_id=r["device_id"], token=r["token"],
                                   platform=r["platform"], kind=r["kind"], payload=r["payload"],
                                   attempts=r["attempts"]))
    if expired:
        await finish_push(conn, expired, state="expired", error="expired before it could be sent")
    return claimed


async def finish_push(conn: asyncpg.Connection | asyncpg.Pool, ids: Sequence[int], *, state: str,
                      error: str | None = None) -> None:
    if ids:
        await conn.execute(
            """UPDATE push_messages SET state = $2, last_error = $3, finished_at = now(), claimed_until = NULL
                WHERE id = ANY($1::bigint[])""",
            list(ids), state, error,
        )


async def retry_push(conn: asyncpg.Connection | asyncpg.Pool, items: Sequence[tuple[int, float, str]]) -> None:
    """Release claims with a delay: items are (id, delay seconds, error)."""
    if items:
        await conn.execute(
            """UPDATE push_messages p
                  SET not_before = now() + make_interval(secs => t.delay), claimed_until = NULL,
                      last_error = t.err
                 FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS t(id, delay, err)
                WHERE p.id = t.id""",
            [i[0] for i in items], [i[1] for i in items], [i[2] for i in items],
        )


async def next_push_due(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    return await conn.fetchval(
        "SELECT min(greatest(not_before, coalesce(claimed_until, not_before))) FROM push_messages WHERE state = 'pending'"
    )


async def push_messages_for(conn: asyncpg.Connection | asyncpg.Pool, dedupe_prefix: str) -> list[asyncpg.Record]:
    """Queue rows whose dedupe key starts with `dedupe_prefix` (diagnostics and tests)."""
    return await conn.fetch(
        "SELECT * FROM push_messages WHERE dedupe_key LIKE $1 || '%' ORDER BY id", dedupe_prefix
    )


async def purge_finished_push(conn: asyncpg.Connection | asyncpg.Pool, *, older_than_days: int) -> int:
    status = await conn.execute(
        "DELETE FROM push_messages WHERE state <> 'pending' AND finished_at < now() - make_interval(days => $1)",
        older_than_days,
    )
    return int(status.split()[-1])


# --- email deliveries ------------------------------------------------------------------------


async def claim_email(conn: asyncpg.Connection | asyncpg.Pool, *, dedupe_key: str, kind: str,
                      user_id: uuid.UUID | None, lease_seconds: float, max_attempts: int) -> bool:
    """Claim the right to send one email; False if it was sent, is being sent, or gave up."""
    row = await conn.fetchrow(
        """INSERT INTO email_deliveries (dedupe_key, kind, user_id, claimed_until)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))
           ON CONFLICT (dedupe_key) DO UPDATE
              SET state = 'sending', attempts = email_deliveries.attempts + 1,
                  claimed_until = EXCLUDED.claimed_until
            WHERE (email_deliveries.state = 'retry'
                   OR (email_deliveries.state = 'sending' AND email_deliveries.claimed_until < now()))
              AND email_deliveries.attempts < $5
        RETURNING attempts""",
        dedupe_key, kind, user_id, lease_seconds, max_attempts,
    )
    return row is not None


async def finish_email(conn: asyncpg.Connection | asyncpg.Pool, dedupe_key: str, *, state: str,
                       error: str | None = None) -> None:
    await conn.execute(
        """UPDATE email_deliveries SET state = $2, last_error = $3, claimed_until = NULL,
                  sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END
            WHERE dedupe_key = $1""",
        dedupe_key, state, error,
    )


async def email_attempts(conn: asyncpg.Connection | asyncpg.Pool, dedupe_key: str) -> int:
    return await conn.fetchval("SELECT attempts FROM email_deliveries WHERE dedupe_key = $1", dedupe_key) or 0


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
