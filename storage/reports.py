"""Organizer views over ticket sales in PostgreSQL: orders, attendees, per-type counts, revenue.

Lists are keyset-paginated ((created_at, id) newest first for orders, (issued_at, id) for
attendees): stable under concurrent inserts, no OFFSET scans. Exports stream rows through a
server-side cursor inside one read-only REPEATABLE READ transaction (a consistent snapshot,
constant memory).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from storage.db import Database

_ORDER_SELECT = """
SELECT o.id, o.status, o.total_cents, o.currency, o.refunded_cents, o.created_at, o.paid_at, o.expires_at,
       u.id AS buyer_id, u.name AS buyer_name, u.email AS buyer_email,
       coalesce((SELECT json_agg(json_build_object('ticket_type_id', i.ticket_type_id, 'name', tt.name,
                                                  'quantity', i.quantity, 'unit_price_cents', i.unit_price_cents)
                                 ORDER BY tt.position, tt.name)
                   FROM order_items i JOIN ticket_types tt ON tt.id = i.ticket_type_id WHERE i.order_id = o.id),
                '[]'::json) AS items
  FROM orders o JOIN users u ON u.id = o.user_id
 WHERE o.event_id = $1
   AND ($2::text IS NULL OR o.status = $2)
   AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.ticket_type_id = $3))
   AND ($4::timestamptz IS NULL OR o.created_at >= $4)
   AND ($5::timestamptz IS NULL OR o.created_at < $5)
   AND ($6::text IS NULL OR strpos(lower(u.email), lower($6)) > 0)
"""

_ATTENDEE_SELECT = """
SELECT t.id, t.status, t.issued_at, t.order_id, t.ticket_type_id, tt.name AS ticket_type,
       u.id AS holder_id, u.name AS holder_name, u.email AS holder_email,
       coalesce((SELECT a.answers FROM form_answers a WHERE a.ticket_id = t.id),
                (SELECT a.answers FROM form_answers a WHERE a.order_id = t.order_id AND a.ticket_id IS NULL),
                '{}'::jsonb) AS answers,
       (SELECT json_build_object('section', sec.name, 'row', s.row_label, 'label', s.label)
          FROM seat_assignments sa JOIN seats s ON s.id = sa.seat_id JOIN seat_sections sec ON sec.id = s.section_id
         WHERE sa.order_id = t.order_id AND sa.ticket_type_id = t.ticket_type_id AND sa.seat_index = t.seat_no
           AND sa.released_at IS NULL) AS seat,
       (SELECT json_build_object('gate', c.gate, 'scanned_at', c.scanned_at)
          FROM checkin_entries c WHERE c.ticket_id = t.id ORDER BY c.scanned_at LIMIT 1) AS first_checkin,
       EXISTS (SELECT 1 FROM checkin_entries c WHERE c.ticket_id = t.id AND c.exited_at IS NULL) AS inside
  FROM tickets t JOIN users u ON u.id = t.holder_id JOIN ticket_types tt ON tt.id = t.ticket_type_id
 WHERE t.event_id = $1
   AND ($2::text IS NULL OR t.status = $2)
   AND ($3::uuid IS NULL OR t.ticket_type_id = $3)
   AND ($4::boolean IS NULL OR EXISTS (SELECT 1 FROM checkin_entries c WHERE c.ticket_id = t.id) = $4)
"""


def _order_args(event_id: uuid.UUID, f: dict[str, Any]) -> list[Any]:
    return [event_id, f.get("status"), f.get("ticket_type_id"), f.get("created_from"), f.get("created_to"),
            f.get("email")]


def _attendee_args(event_id: uuid.UUID, f: dict[str, Any]) -> list[Any]:
    return [event_id, f.get("status"), f.get("ticket_type_id"), f.get("checked_in")]


async def list_orders(conn: Any, event_id: uuid.UUID, filters: dict[str, Any], *,
                      after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        _ORDER_SELECT + """ AND ($7::timestamptz IS NULL OR (o.created_at, o.id) < ($7, $8::uuid))
                            ORDER BY o.created_at DESC, o.id DESC LIMIT $9""",
        *_order_args(event_id, filters), after[0] if after else None, after[1] if after else None, limit)


async def list_attendees(conn: Any, event_id: uuid.UUID, filters: dict[str, Any], *,
                         after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        _ATTENDEE_SELECT + """ AND ($5::timestamptz IS NULL OR (t.issued_at, t.id) > ($5, $6::uuid))
                               ORDER BY t.issued_at, t.id LIMIT $7""",
        *_attendee_args(event_id, filters), after[0] if after else None, after[1] if after else None, limit)


async def questions(conn: Any, event_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, label FROM form_questions WHERE event_id = $1 ORDER BY position, created_at",
                            event_id)


async def sales(conn: Any, event_id: uuid.UUID) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    types = await conn.fetch(
        """SELECT t.id, t.name, t.kind, t.price_cents, t.currency, t.capacity, t.sold, t.held,
                  greatest(t.capacity - t.sold - t.held, 0) AS available, t.status, t.quota_id,
                  EXISTS (SELECT 1 FROM seat_maps m WHERE m.ticket_type_id = t.id) AS seated
             FROM ticket_types t WHERE t.event_id = $1 ORDER BY t.position, t.created_at""", event_id)
    quotas = await conn.fetch(
        """SELECT id, name, capacity, sold, held, greatest(capacity - sold - held, 0) AS available
             FROM ticket_quotas WHERE event_id = $1 ORDER BY created_at""", event_id)
    return types, quotas


# Money counts once it was received: paid orders, free confirmations, and orders refunded or
# cancelled after payment (a late payment refunded at once counts in gross and in refunded).
_MONEY_IN = "(o.paid_at IS NOT NULL OR o.status IN ('confirmed', 'refunded'))"


async def revenue(conn: Any, event_id: uuid.UUID) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    totals = await conn.fetch(
        f"""SELECT o.currency, count(*) AS orders, sum(o.total_cents)::bigint AS gross_cents,
                   sum(o.refunded_cents)::bigint AS refunded_cents
              FROM orders o WHERE o.event_id = $1 AND {_MONEY_IN}
             GROUP BY o.currency ORDER BY o.currency""", event_id)
    by_type = await conn.fetch(
        f"""SELECT i.ticket_type_id, tt.name, o.currency, sum(i.quantity)::bigint AS tickets,
                   sum(i.quantity * i.unit_price_cents)::bigint AS gross_cents
              FROM orders o JOIN order_items i ON i.order_id = o.id JOIN ticket_types tt ON tt.id = i.ticket_type_id
             WHERE o.event_id = $1 AND {_MONEY_IN}
             GROUP BY i.ticket_type_id, tt.name, o.currency, tt.position ORDER BY tt.position, tt.name""", event_id)
    return totals, by_type


@asynccontextmanager
async def snapshot(db: Database, name: str) -> AsyncIterator[asyncpg.Connection]:
    async with db.transaction(name, isolation="repeatable_read", readonly=True) as conn:
        yield conn


async def stream_orders(conn: asyncpg.Connection, event_id: uuid.UUID, filters: dict[str, Any],
                        prefetch: int = 500) -> AsyncIterator[asyncpg.Record]:
    async for row in conn.cursor(_ORDER_SELECT + " ORDER BY o.created_at, o.id", *_order_args(event_id, filters),
                                 prefetch=prefetch):
        yield row


async def stream_attendees(conn: asyncpg.Connection, event_id: uuid.UUID, filters: dict[str, Any],
                           prefetch: int = 500) -> AsyncIterator[asyncpg.Record]:
    async for row in conn.cursor(_ATTENDEE_SELECT + " ORDER BY t.issued_at, t.id", *_attendee_args(event_id, filters),
                                 prefetch=prefetch):
        yield row
