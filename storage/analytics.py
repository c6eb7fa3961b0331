"""Analytics aggregate tables: incremental updates (called by the analytics consumers inside their
transaction) and the reads behind the organizer endpoints.

Every `add_*` is an upsert that adds deltas, so applying an event is O(1) and the consumers'
`claim_once` in the same transaction makes each event count once. Reads touch only aggregate
tables (plus the small `ticket_types`/`sessions` rows of one event for names and capacities).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

Conn = asyncpg.Connection | asyncpg.Pool
NIL = uuid.UUID(int=0)


def floor(ts: datetime, seconds: int) -> datetime:
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=ts.tzinfo)


# --- updates ---------------------------------------------------------------------------------------

async def add_sales(conn: asyncpg.Connection, event_id: uuid.UUID, bucket: datetime, ticket_type_id: uuid.UUID, *,
                    orders: int = 0, registrations: int = 0, cancelled: int = 0, revenue: int = 0,
                    refunded: int = 0) -> None:
    await conn.execute(
        """INSERT INTO analytics_sales AS s (event_id, bucket, ticket_type_id, orders, registrations, cancelled,
                                             revenue_cents, refunded_cents)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (event_id, bucket, ticket_type_id) DO UPDATE SET
               orders = s.orders + EXCLUDED.orders, registrations = s.registrations + EXCLUDED.registrations,
               cancelled = s.cancelled + EXCLUDED.cancelled, revenue_cents = s.revenue_cents + EXCLUDED.revenue_cents,
               refunded_cents = s.refunded_cents + EXCLUDED.refunded_cents""",
        event_id, bucket, ticket_type_id, orders, registrations, cancelled, revenue, refunded,
    )


_TOTAL_FIELDS = ("orders", "registrations", "revenue_cents", "refunded_cents", "tickets_issued", "checked_in",
                 "messages", "questions", "votes", "visits")


async def add_totals(conn: asyncpg.Connection, event_id: uuid.UUID, *, currency: str | None = None,
                     **deltas: int) -> None:
    unknown = set(deltas) - set(_TOTAL_FIELDS)
    if unknown:
        raise ValueError(f"unknown totals {unknown}")
    values = [deltas.get(f, 0) for f in _TOTAL_FIELDS]
    cols = ", ".join(_TOTAL_FIELDS)
    params = ", ".join(f"${i + 3}" for i in range(len(_TOTAL_FIELDS)))
    sets = ", ".join(f"{f} = t.{f} + EXCLUDED.{f}" for f in _TOTAL_FIELDS)
    await conn.execute(
        f"""INSERT INTO analytics_totals AS t (event_id, currency, {cols}) VALUES ($1, coalesce($2, ''), {params})
            ON CONFLICT (event_id) DO UPDATE SET {sets},
                currency = CASE WHEN t.currency = '' THEN EXCLUDED.currency ELSE t.currency END,
                updated_at = now()""",
        event_id, currency, *values,
    )


async def add_gate(conn: asyncpg.Connection, event_id: uuid.UUID, gate: str, bucket: datetime, *, arrivals: int = 0,
                   exits: int = 0) -> None:
    await conn.execute(
        """INSERT INTO analytics_gate_traffic AS g (event_id, gate, bucket, arrivals, exits) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (event_id, gate, bucket) DO UPDATE SET arrivals = g.arrivals + EXCLUDED.arrivals,
                                                              exits = g.exits + EXCLUDED.exits""",
        event_id, gate, bucket, arrivals, exits,
    )


async def first_checkin(conn: asyncpg.Connection, event_id: uuid.UUID, ticket_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(
        "INSERT INTO analytics_checked_in (ticket_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        ticket_id, event_id,
    ))


async def sessions_at(conn: asyncpg.Connection, event_id: uuid.UUID, room: str, at: datetime) -> list[uuid.UUID]:
    """Sessions of the event held in `room` around `at` (a door scan there counts as attending)."""
    rows = await conn.fetch(
        """SELECT id FROM sessions WHERE event_id = $1 AND room = $2 AND status = 'scheduled'
              AND starts_at - interval '15 minutes' <= $3 AND ends_at >= $3""",
        event_id, room, at,
    )
    return [r["id"] for r in rows]


async def add_attendance(conn: asyncpg.Connection, event_id: uuid.UUID, session_id: uuid.UUID, bucket: datetime,
                         who: str) -> None:
    new = await conn.fetchval(
        """INSERT INTO analytics_attendance_seen (session_id, bucket, who) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        session_id, bucket, who,
    )
    if new:
        await conn.execute(
            """INSERT INTO analytics_attendance AS a (event_id, session_id, bucket, people) VALUES ($1, $2, $3, 1)
               ON CONFLICT (event_id, session_id, bucket) DO UPDATE SET people = a.people + 1""",
            event_id, session_id, bucket,
        )


async def add_engagement(conn: asyncpg.Connection, event_id: uuid.UUID, session_id: uuid.UUID,
                         user_id: uuid.UUID | None, *, messages: int = 0, questions: int = 0, votes: int = 0) -> None:
    participant = 0
    if user_id is not None:
        participant = 1 if await conn.fetchval(
            """INSERT INTO analytics_participants (event_id, session_id, user_id) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            event_id, session_id, user_id,
        ) else 0
    await conn.execute(
        """INSERT INTO analytics_engagement AS e (event_id, session_id, messages, questions, votes, participants)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (event_id, session_id) DO UPDATE SET messages = e.messages + EXCLUDED.messages,
               questions = e.questions + EXCLUDED.questions, votes = e.votes + EXCLUDED.votes,
               participants = e.participants + EXCLUDED.participants""",
        event_id, session_id, messages, questions, votes, participant,
    )


async def add_minute(conn: asyncpg.Connection, event_id: uuid.UUID, minute: datetime, *, messages: int = 0,
                     joins: int = 0) -> None:
    await conn.execute(
        """INSERT INTO analytics_minutes AS m (event_id, minute, messages, joins) VALUES ($1, $2, $3, $4)
           ON CONFLICT (event_id, minute) DO UPDATE SET messages = m.messages + EXCLUDED.messages,
                                                       joins = m.joins + EXCLUDED.joins""",
        event_id, minute, messages, joins,
    )


async def touch_room(conn: asyncpg.Connection, event_id: uuid.UUID, room: str, user_id: uuid.UUID,
                     at: datetime, *, left: bool = False) -> None:
    if left:
        await conn.execute("DELETE FROM analytics_room_activity WHERE event_id = $1 AND room = $2 AND user_id = $3",
                           event_id, room, user_id)
        return
    await conn.execute(
        """INSERT INTO analytics_room_activity AS r (event_id, room, user_id, last_seen) VALUES ($1, $2, $3, $4)
           ON CONFLICT (event_id, room, user_id) DO UPDATE SET last_seen = greatest(r.last_seen, EXCLUDED.last_seen)""",
        event_id, room, user_id, at,
    )


async def link_order_referral(conn: asyncpg.Connection, order_id: uuid.UUID, event_id: uuid.UUID, code: str,
                              channel: str) -> bool:
    """Remember which referral an order came with; True the first time."""
    return bool(await conn.fetchval(
        """INSERT INTO analytics_order_referrals (order_id, event_id, code, channel) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING true""",
        order_id, event_id, code, channel,
    ))


async def order_referral(conn: asyncpg.Connection, order_id: uuid.UUID) -> tuple[str, str] | None:
    row = await conn.fetchrow("SELECT code, channel FROM analytics_order_referrals WHERE order_id = $1", order_id)
    return (row["code"], row["channel"]) if row else None


async def add_referral(conn: asyncpg.Connection, event_id: uuid.UUID, code: str, channel: str, *, visits: int = 0,
                       registrations: int = 0, orders: int = 0, revenue: int = 0) -> None:
    await conn.execute(
        """INSERT INTO analytics_referrals AS r (event_id, code, channel, visits, registrations, orders, revenue_cents)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (event_id, code, channel) DO UPDATE SET visits = r.visits + EXCLUDED.visits,
               registrations = r.registrations + EXCLUDED.registrations, orders = r.orders + EXCLUDED.orders,
               revenue_cents = r.revenue_cents + EXCLUDED.revenue_cents""",
        event_id, code, channel, visits, registrations, orders, revenue,
    )


async def set_feedback(conn: asyncpg.Connection, event_id: uuid.UUID, session_id: uuid.UUID, user_id: uuid.UUID,
                       rating: int, has_comment: bool) -> None:
    """Record a user's (new or changed) rating and move the histogram accordingly."""
    previous = await conn.fetchrow(
        """SELECT rating, has_comment FROM analytics_feedback_current
            WHERE event_id = $1 AND session_id = $2 AND user_id = $3 FOR UPDATE""",
        event_id, session_id, user_id,
    )
    await conn.execute(
        """INSERT INTO analytics_feedback_current (event_id, session_id, user_id, rating, has_comment)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (event_id, session_id, user_id) DO UPDATE SET rating = EXCLUDED.rating,
                                                                     has_comment = EXCLUDED.has_comment""",
        event_id, session_id, user_id, rating, has_comment,
    )
    delta = {f"r{i}": 0 for i in range(1, 6)}
    delta[f"r{rating}"] += 1
    responses, total, comments = 1, rating, int(has_comment)
    if previous is not None:
        delta[f"r{previous['rating']}"] -= 1
        responses, total = 0, rating - previous["rating"]
        comments = int(has_comment) - int(previous["has_comment"])
    await conn.execute(
        """INSERT INTO analytics_feedback AS f (event_id, session_id, responses, rating_sum, r1, r2, r3, r4, r5, comments)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (event_id, session_id) DO UPDATE SET responses = f.responses + EXCLUDED.responses,
               rating_sum = f.rating_sum + EXCLUDED.rating_sum, r1 = f.r1 + EXCLUDED.r1, r2 = f.r2 + EXCLUDED.r2,
               r3 = f.r3 + EXCLUDED.r3, r4 = f.r4 + EXCLUDED.r4, r5 = f.r5 + EXCLUDED.r5,
               comments = f.comments + EXCLUDED.comments""",
        event_id, session_id, responses, total, delta["r1"], delta["r2"], delta["r3"], delta["r4"], delta["r5"],
        comments,
    )


async def prune_live(conn: Conn, *, older_than: timedelta) -> None:
    await conn.execute("DELETE FROM analytics_minutes WHERE minute < now() - $1::interval", older_than)
    await conn.execute("DELETE FROM analytics_room_activity WHERE last_seen < now() - $1::interval", older_than)


# --- reads ----------------------------------------------------------------------------------------

async def totals(conn: Conn, event_id: uuid.UUID) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM analytics_totals WHERE event_id = $1", event_id)
    if row is None:
        return {f: 0 for f in _TOTAL_FIELDS} | {"currency": ""}
    data = dict(row)
    data.pop("event_id", None)
    return data


async def sales_series(conn: Conn, event_id: uuid.UUID, *, unit: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT date_trunc($2, bucket) AS bucket, ticket_type_id, sum(orders)::int AS orders,
                  sum(registrations)::int AS registrations, sum(cancelled)::int AS cancelled,
                  sum(revenue_cents)::bigint AS revenue_cents, sum(refunded_cents)::bigint AS refunded_cents
             FROM analytics_sales WHERE event_id = $1
            GROUP BY 1, 2 ORDER BY 1, 2""",
        event_id, unit,
    )
    return [dict(r) for r in rows]


async def sales_by_type(conn: Conn, event_id: uuid.UUID) -> list[dict[str, Any]]:
    """Per ticket type: sold (net of cancellations), capacity, sell-through, revenue."""
    rows = await conn.fetch(
        """WITH s AS (SELECT ticket_type_id, sum(registrations)::int AS registrations, sum(cancelled)::int AS cancelled,
                             sum(revenue_cents)::bigint AS revenue_cents
                        FROM analytics_sales WHERE event_id = $1 AND ticket_type_id <> $2 GROUP BY 1)
           SELECT t.id AS ticket_type_id, t.name, t.capacity, coalesce(s.registrations, 0) AS registrations,
                  coalesce(s.cancelled, 0) AS cancelled, coalesce(s.revenue_cents, 0) AS revenue_cents
             FROM ticket_types t LEFT JOIN s ON s.ticket_type_id = t.id
            WHERE t.event_id = $1 ORDER BY t.name, t.id""",
        event_id, NIL,
    )
    out = []
    for r in rows:
        sold = r["registrations"] - r["cancelled"]
        cap = r["capacity"]
        out.append({**dict(r), "sold": sold,
                    "sell_through": round(sold / cap, 4) if cap else None})
    return out


async def gate_series(conn: Conn, event_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT gate, bucket, arrivals, exits FROM analytics_gate_traffic WHERE event_id = $1 ORDER BY gate, bucket",
        event_id,
    )
    return [dict(r) for r in rows]


async def attendance(conn: Conn, event_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT a.session_id, s.title, a.bucket, a.people
             FROM analytics_attendance a LEFT JOIN sessions s ON s.id = a.session_id
            WHERE a.event_id = $1 ORDER BY s.starts_at NULLS LAST, a.session_id, a.bucket""",
        event_id,
    )
    return [dict(r) for r in rows]


async def engagement(conn: Conn, event_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT e.session_id, s.title, e.messages, e.questions, e.votes, e.participants
             FROM analytics_engagement e LEFT JOIN sessions s ON s.id = e.session_id
            WHERE e.event_id = $1 ORDER BY s.starts_at NULLS LAST, e.session_id""",
        event_id,
    )
    return [dict(r) for r in rows]


async def live(conn: Conn, event_id: uuid.UUID, *, active_seconds: int = 300, minutes: int = 15) -> dict[str, Any]:
    rooms = await conn.fetch(
        """SELECT room, count(*)::int AS active_users FROM analytics_room_activity
            WHERE event_id = $1 AND last_seen > now() - make_interval(secs => $2)
            GROUP BY room ORDER BY room""",
        event_id, active_seconds,
    )
    series = await conn.fetch(
        """SELECT minute, messages, joins FROM analytics_minutes
            WHERE event_id = $1 AND minute > now() - make_interval(mins => $2) ORDER BY minute""",
        event_id, minutes,
    )
    return {"rooms": [dict(r) for r in rooms], "per_minute": [dict(r) for r in series]}


async def referrals(conn: Conn, event_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT code, channel, visits, registrations, orders, revenue_cents FROM analytics_referrals
            WHERE event_id = $1 ORDER BY revenue_cents DESC, registrations DESC, visits DESC, code, channel""",
        event_id,
    )
    return [dict(r) for r in rows]


async def feedback(conn: Conn, event_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT f.session_id, s.title, f.responses, f.rating_sum, f.r1, f.r2, f.r3, f.r4, f.r5, f.comments
             FROM analytics_feedback f LEFT JOIN sessions s ON s.id = f.session_id
            WHERE f.event_id = $1 ORDER BY (f.session_id = $2) DESC, s.starts_at, f.session_id""",
        event_id, NIL,
    )
    out = []
    for r in rows:
        d = dict(r)
        d["average"] = round(d["rating_sum"] / d["responses"], 3) if d["responses"] else None
        d["scope"] = "event" if d["session_id"] == NIL else "session"
        out.append(d)
    return out


async def recent_rooms(conn: Conn, event_id: uuid.UUID, *, seconds: int) -> list[str]:
    rows = await conn.fetch(
        """SELECT DISTINCT room FROM analytics_room_activity
            WHERE event_id = $1 AND last_seen > now() - make_interval(secs => $2)""",
        event_id, seconds,
    )
    return [r["room"] for r in rows]


async def active_events(conn: Conn, *, seconds: int) -> list[uuid.UUID]:
    """Events with messages or joins in the last `seconds` (whose staff rooms get live figures)."""
    rows = await conn.fetch(
        "SELECT DISTINCT event_id FROM analytics_minutes WHERE minute > now() - make_interval(secs => $1)", seconds,
    )
    return [r["event_id"] for r in rows]
