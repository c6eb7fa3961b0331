"""Analytics outbox consumers: each event is applied to the aggregate tables in one transaction
together with `claim_once(consumer, event id)`, so every fact counts exactly once — across
redeliveries, crashes and restarts — and requests never scan the source tables.

Four consumers (four relay streams, so a slow one does not hold the others back):
`analytics.sales` (orders, tickets, referral conversions), `analytics.door` (check-ins),
`analytics.live` (room joins, messages, questions, votes), `analytics.reach` (referral visits,
feedback). Facts without an `event_id` are ignored.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from domain.consumers import Consumer
from domain.services import Core
from storage import analytics as agg
from storage.outbox import OutboxEvent
from storage.relay import claim_once

HOUR, FIVE_MIN, QUARTER, MINUTE = 3600, 300, 900, 60
Apply = Callable[[asyncpg.Connection, OutboxEvent, uuid.UUID], Awaitable[None]]


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None


def _time(value: Any, default: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=default.tzinfo)
        except ValueError:
            return default
    return default


def session_of(data: dict[str, Any]) -> uuid.UUID | None:
    """The session a live fact belongs to: `session_id`, or a room named `session:<uuid>`."""
    sid = _uuid(data.get("session_id"))
    if sid is None:
        room = str(data.get("room") or "")
        if room.startswith("session:"):
            sid = _uuid(room.split(":", 1)[1])
    return sid


def _items(data: dict[str, Any]) -> list[tuple[uuid.UUID, int, int]]:
    out = []
    for item in data.get("items") or []:
        tid = _uuid(item.get("ticket_type_id"))
        if tid is not None:
            out.append((tid, int(item.get("quantity") or 0), int(item.get("unit_price_cents") or 0)))
    return out


# --- sales -----------------------------------------------------------------------------------------

async def _confirmed(conn: asyncpg.Connection, e: OutboxEvent, event_id: uuid.UUID) -> None:
    d = e.data
    bucket = agg.floor(e.occurred_at, HOUR)
    items = _items(d)
    for tid, qty, price in items:
        await agg.add_sales(conn, event_id, bucket, tid, orders=1, registrations=qty, revenue=qty * price)
    quantity = sum(q for _, q, _ in items)
    total = int(d.get("total_cents") or sum(q * p for _, q, p in items))
    await agg.add_totals(conn, event_id, currency=d.get("currency"), orders=1, registrations=quantity,
                         revenue_cents=total)
    order_id = _uuid(d.get("order_id"))
    code = d.get("referral_code")
    if order_id is not None and code is not None:
        await agg.link_order_referral(conn, order_id, event_id, str(code), str(d.get("referral_channel") or ""))
    ref = await agg.order_referral(conn, order_id) if order_id is not None else None
    if ref is not None:
        await agg.add_referral(conn, event_id, ref[0], ref[1], registrations=quantity, orders=1, revenue=total)


async def apply_sales(conn: asyncpg.Connection, e: OutboxEvent, event_id: uuid.UUID) -> None:
    d = e.data
    bucket = agg.floor(e.occurred_at, HOUR)
    if e.type == "order.placed":
        if d.get("status") == "confirmed":
            await _confirmed(conn, e, event_id)
        elif d.get("referral_code") is not None and _uuid(d.get("order_id")):
            await agg.link_order_referral(conn, _uuid(d.get("order_id")), event_id, str(d["referral_code"]),
                                          str(d.get("referral_channel") or ""))
    elif e.type == "order.paid":
        await _confirmed(conn, e, event_id)
    elif e.type == "order.refunded":
        amount = int(d.get("amount_cents") or 0)
        voided = len(d.get("voided_ticket_ids") or [])
        await agg.add_sales(conn, event_id, bucket, agg.NIL, refunded=amount)
        await agg.add_totals(conn, event_id, refunded_cents=amount, tickets_issued=-voided)
        if d.get("status") == "refunded":
            for tid, qty, _ in _items(d):
                await agg.add_sales(conn, event_id, bucket, tid, cancelled=qty)
        order_id = _uuid(d.get("order_id"))
        ref = await agg.order_referral(conn, order_id) if order_id else None
        if ref is not None:
            await agg.add_referral(conn, event_id, ref[0], ref[1], revenue=-amount)
    elif e.type == "order.cancelled":
        if d.get("previous_status") in ("paid", "confirmed"):
            for tid, qty, _ in _items(d):
                await agg.add_sales(conn, event_id, bucket, tid, cancelled=qty)
    elif e.type == "ticket.issued":
        await agg.add_totals(conn, event_id, tickets_issued=len(d.get("tickets") or []))
    elif e.type == "referral.converted":
        order_id = _uuid(d.get("order_id"))
        code = str(d.get("code") or "")
        channel = str(d.get("channel") or "")
        if order_id is not None and await agg.link_order_referral(conn, order_id, event_id, code, channel):
            await agg.add_referral(conn, event_id, code, channel, orders=1, registrations=1,
                                   revenue=int(d.get("amount_cents") or 0))


def sales_noop(e: OutboxEvent) -> bool:
    """A hold (`order.placed` still `held`, no referral code) changes no sales figure: it counts
    once paid (`order.paid`). A drop writes thousands of them; skipping them here spares each a
    transaction and a delivery record."""
    return (e.type == "order.placed" and e.data.get("status") != "confirmed"
            and e.data.get("referral_code") is None)


SALES_TYPES = frozenset({"order.placed", "order.paid", "order.refunded", "order.cancelled", "ticket.issued",
                         "referral.converted"})


# --- door ------------------------------------------------------------------------------------------

async def apply_door(conn: asyncpg.Connection, e: OutboxEvent, event_id: uuid.UUID) -> None:
    d = e.data
    at = _time(d.get("scanned_at") or d.get("checked_in_at"), e.occurred_at)
    gate = str(d.get("gate") or "")
    ticket_id = _uuid(d.get("ticket_id"))
    if e.type == "ticket.checked_out" or d.get("direction") == "out":
        await agg.add_gate(conn, event_id, gate, agg.floor(at, FIVE_MIN), exits=1)
        return
    await agg.add_gate(conn, event_id, gate, agg.floor(at, FIVE_MIN), arrivals=1)
    if ticket_id is not None and await agg.first_checkin(conn, event_id, ticket_id):
        await agg.add_totals(conn, event_id, checked_in=1)
    if gate and ticket_id is not None:
        for session_id in await agg.sessions_at(conn, event_id, gate, at):
            await agg.add_attendance(conn, event_id, session_id, agg.floor(at, QUARTER), f"ticket:{ticket_id}")


DOOR_TYPES = frozenset({"ticket.checked_in", "ticket.checked_out"})


# --- live rooms ------------------------------------------------------------------------------------

async def apply_live(conn: asyncpg.Connection, e: OutboxEvent, event_id: uuid.UUID) -> None:
    d = e.data
    user_id = _uuid(d.get("user_id") or d.get("author_id"))
    session_id = session_of(d)
    room = str(d.get("room") or "")
    at = e.occurred_at
    if e.type in ("room.joined", "room.left"):
        if user_id is not None and room:
            await agg.touch_room(conn, event_id, room, user_id, at, left=e.type == "room.left")
        if e.type == "room.joined":
            await agg.add_minute(conn, event_id, agg.floor(at, MINUTE), joins=1)
            if session_id is not None and user_id is not None:
                await agg.add_attendance(conn, event_id, session_id, agg.floor(at, QUARTER), str(user_id))
        return
    counts = {"message.posted": ("messages", 1), "question.asked": ("questions", 1), "vote.cast": ("votes", 1)}
    field, one = counts[e.type]
    if e.type == "vote.cast" and d.get("changed"):
        one = 0  # a changed vote replaces the user's earlier one: still one vote

    await agg.add_engagement(conn, event_id, session_id or agg.NIL, user_id, **{field: one})
    await agg.add_totals(conn, event_id, **{field: one})
    if e.type == "message.posted":
        await agg.add_minute(conn, event_id, agg.floor(at, MINUTE), messages=1)
    if user_id is not None and room:
        await agg.touch_room(conn, event_id, room, user_id, at)


LIVE_TYPES = frozenset({"room.joined", "room.left", "message.posted", "question.asked", "vote.cast"})


# --- reach: referral visits and feedback ------------------------------------------------------------

async def apply_reach(conn: asyncpg.Connection, e: OutboxEvent, event_id: uuid.UUID) -> None:
    d = e.data
    if e.type == "referral.visited":
        await agg.add_referral(conn, event_id, str(d.get("code") or ""), str(d.get("channel") or ""), visits=1)
        await agg.add_totals(conn, event_id, visits=1)
    elif e.type == "feedback.submitted":
        # notify's payload: {feedback_id, session_id, rating, previous_rating, has_comment, ...}; one
        # feedback row per user and session, so feedback_id identifies "this person's rating here".
        who = _uuid(d.get("feedback_id")) or _uuid(d.get("user_id"))
        rating = int(d.get("rating") or 0)
        if who is None or not 1 <= rating <= 5:
            return
        has_comment = bool(d["has_comment"]) if "has_comment" in d else bool((d.get("comment") or "").strip())
        await agg.set_feedback(conn, event_id, _uuid(d.get("session_id")) or agg.NIL, who, rating, has_comment)


REACH_TYPES = frozenset({"referral.visited", "feedback.submitted"})


def make_consumer(core: Core, name: str, types: frozenset[str], apply: Apply,
                  noop: Callable[[OutboxEvent], bool] | None = None) -> Consumer:
    """`noop(event)`: events known to change nothing, skipped without a transaction (applying
    them twice would change nothing either, so they need no exactly-once record)."""
    async def handle(event: OutboxEvent) -> None:
        event_id = event.event_id or _uuid(event.data.get("event_id"))
        if event_id is None or (noop is not None and noop(event)):
            return
        async with core.db.transaction(name.replace(".", "_")) as conn:
            if await claim_once(conn, name, event.id):
                await apply(conn, event, event_id)

    return Consumer(name=name, handle=handle, types=types)


def analytics_consumers(core: Core) -> list[Consumer]:
    return [
        make_consumer(core, "analytics.sales", SALES_TYPES, apply_sales, noop=sales_noop),
        make_consumer(core, "analytics.door", DOOR_TYPES, apply_door),
        make_consumer(core, "analytics.live", LIVE_TYPES, apply_live),
        make_consumer(core, "analytics.reach", REACH_TYPES, apply_reach),
    ]
