"""Ticket types, shared quotas, per-event signing keys and issued tickets in PostgreSQL.

Counters (`sold`, `held`) are never written here except through `storage.orders` and the
group-commit batch (`storage.orders.place_batch`); this module changes definitions only.
Capacity changes rely on the CHECK constraint `sold + held <= capacity`: lowering a capacity
below what is already sold or held fails with `conflict`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from domain.errors import FoyerError
from domain.tickets.models import Quota, SaleEvent, Ticket, TicketType

TYPE_COLUMNS = (
    "id, event_id, name, description, kind, price_cents, currency, capacity, sold, held, min_per_order, "
    "max_per_order, sale_starts_at, sale_ends_at, visibility, access_code_hash, quota_id, position, status, "
    "created_at"
)
TICKET_COLUMNS = "id, event_id, order_id, ticket_type_id, seat_no, holder_id, status, generation, code, issued_at"
_TYPE_FIELDS = frozenset({
    "name", "description", "kind", "price_cents", "currency", "capacity", "min_per_order", "max_per_order",
    "sale_starts_at", "sale_ends_at", "visibility", "access_code_hash", "quota_id", "position", "status",
})


def _constraint_error(exc: asyncpg.PostgresError) -> FoyerError:
    name = getattr(exc, "constraint_name", "") or ""
    if "no_oversell" in name:
        return FoyerError("conflict", "capacity cannot go below what is already sold or held")
    return FoyerError("validation_failed", "the ticket type is not valid",
                      details=[{"field": "body", "message": name or str(exc)}])


async def create_type(conn: asyncpg.Connection, event_id: uuid.UUID, fields: dict[str, Any]) -> TicketType:
    cols = [k for k in fields if k in _TYPE_FIELDS]
    placeholders = ", ".join(f"${i + 2}" for i in range(len(cols)))
    try:
        row = await conn.fetchrow(
            f"INSERT INTO ticket_types (event_id, {', '.join(cols)}) VALUES ($1, {placeholders}) "
            f"RETURNING {TYPE_COLUMNS}",
            event_id, *[fields[c] for c in cols],
        )
    except (asyncpg.CheckViolationError, asyncpg.ForeignKeyViolationError) as exc:
        raise _constraint_error(exc) from None
    return TicketType.from_record(row)


async def update_type(conn: asyncpg.Connection, event_id: uuid.UUID, type_id: uuid.UUID,
                      fields: dict[str, Any]) -> TicketType:
    cols = [k for k in fields if k in _TYPE_FIELDS]
    if not cols:
        t = await get_type(conn, event_id, type_id)
        if t is None:
            raise FoyerError("not_found", "ticket type not found")
        return t
    sets = ", ".join(f"{c} = ${i + 3}" for i, c in enumerate(cols))
    try:
        row = await conn.fetchrow(
            f"UPDATE ticket_types SET {sets}, updated_at = now() WHERE event_id = $1 AND id = $2 "
            f"RETURNING {TYPE_COLUMNS}",
            event_id, type_id, *[fields[c] for c in cols],
        )
    except (asyncpg.CheckViolationError, asyncpg.ForeignKeyViolationError) as exc:
        raise _constraint_error(exc) from None
    if row is None:
        raise FoyerError("not_found", "ticket type not found")
    return TicketType.from_record(row)


async def get_type(conn: Any, event_id: uuid.UUID, type_id: uuid.UUID) -> TicketType | None:
    row = await conn.fetchrow(f"SELECT {TYPE_COLUMNS} FROM ticket_types WHERE event_id = $1 AND id = $2",
                              event_id, type_id)
    return TicketType.from_record(row) if row else None


async def list_types(conn: Any, event_id: uuid.UUID) -> list[TicketType]:
    rows = await conn.fetch(
        f"SELECT {TYPE_COLUMNS} FROM ticket_types WHERE event_id = $1 ORDER BY position, created_at", event_id
    )
    return [TicketType.from_record(r) for r in rows]


async def create_quota(conn: asyncpg.Connection, event_id: uuid.UUID, *, name: str, capacity: int,
                       type_ids: Sequence[uuid.UUID]) -> Quota:
    """A shared quota over `type_ids`; the types' current sold/held count against it at once."""
    row = await conn.fetchrow(
        """INSERT INTO ticket_quotas (event_id, name, capacity) VALUES ($1, $2, $3)
           RETURNING id, event_id, name, capacity, sold, held""", event_id, name, capacity)
    if type_ids:
        locked = await conn.fetch(
            "SELECT id, sold, held FROM ticket_types WHERE event_id = $1 AND id = ANY($2::uuid[]) ORDER BY id "
            "FOR UPDATE", event_id, list(type_ids))
        if len(locked) != len(set(type_ids)):
            raise FoyerError("validation_failed", "unknown ticket type",
                             details=[{"field": "ticket_type_ids", "message": "not a ticket type of this event"}])
        await conn.execute("UPDATE ticket_types SET quota_id = $1, updated_at = now() WHERE id = ANY($2::uuid[])",
                           row["id"], list(type_ids))
        try:
            row = await conn.fetchrow(
                """UPDATE ticket_quotas SET sold = $2, held = $3 WHERE id = $1
                   RETURNING id, event_id, name, capacity, sold, held""",
                row["id"], sum(r["sold"] for r in locked), sum(r["held"] for r in locked))
        except asyncpg.CheckViolationError:
            raise FoyerError("conflict", "these types already sold or hold more than the quota") from None
    return Quota(**dict(row))


async def list_quotas(conn: Any, event_id: uuid.UUID) -> list[tuple[Quota, list[uuid.UUID]]]:
    rows = await conn.fetch(
        """SELECT q.id, q.event_id, q.name, q.capacity, q.sold, q.held,
                  coalesce(array(SELECT t.id FROM ticket_types t WHERE t.quota_id = q.id ORDER BY t.id), '{}') AS tids
             FROM ticket_quotas q WHERE q.event_id = $1 ORDER BY q.created_at""", event_id)
    return [(Quota(r["id"], r["event_id"], r["name"], r["capacity"], r["sold"], r["held"]), list(r["tids"]))
            for r in rows]


async def load_sale_event(conn: Any, event_id: uuid.UUID) -> SaleEvent | None:
    """The event's sale facts, its ticket types and quotas (two queries)."""
    ev = await conn.fetchrow("SELECT id, status, owner_id, title FROM events WHERE id = $1", event_id)
    if ev is None:
        return None
    types = await list_types(conn, event_id)
    quotas = await conn.fetch("SELECT id, event_id, name, capacity, sold, held FROM ticket_quotas WHERE event_id = $1",
                              event_id)
    return SaleEvent(id=ev["id"], status=ev["status"], owner_id=ev["owner_id"], title=ev["title"],
                     types={t.id: t for t in types}, quotas={q["id"]: Quota(**dict(q)) for q in quotas})


# --- per-event signing keys -----------------------------------------------------------------------

async def ensure_event_key(conn: Any, event_id: uuid.UUID,
                           make: Callable[[], tuple[str, bytes, bytes]]) -> asyncpg.Record:
    """Return the event's key row, creating it with `make()` -> (kid, public, private_enc) if absent.

    Race-free across nodes: the first insert wins, everyone reads the winner."""
    row = await conn.fetchrow("SELECT key_id, public_key, private_key_enc FROM event_ticket_keys WHERE event_id = $1",
                              event_id)
    if row is not None:
        return row
    kid, public, private_enc = make()
    await conn.execute(
        """INSERT INTO event_ticket_keys (event_id, key_id, public_key, private_key_enc) VALUES ($1, $2, $3, $4)
           ON CONFLICT (event_id) DO NOTHING""", event_id, kid, public, private_enc)
    return await conn.fetchrow("SELECT key_id, public_key, private_key_enc FROM event_ticket_keys WHERE event_id = $1",
                               event_id)


# --- tickets --------------------------------------------------------------------------------------

async def insert_tickets(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk insert (id, event_id, order_id, ticket_type_id, seat_no, holder_id, code, price_cents).

    The unique (order_id, ticket_type_id, seat_no) makes a second issue of the same seat fail."""
    if not rows:
        return
    cols = list(zip(*rows, strict=True))
    await conn.execute(
        """INSERT INTO tickets (id, event_id, order_id, ticket_type_id, seat_no, holder_id, code, price_cents)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::uuid[], $7::text[],
                                $8::bigint[])""",
        *[list(c) for c in cols])


async def add_attendees(conn: asyncpg.Connection, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Holding a confirmed ticket makes the user an `attendee` of the event (idempotent)."""
    if not pairs:
        return
    events, users = zip(*sorted(set(pairs)), strict=True)
    await conn.execute(
        """INSERT INTO event_members (event_id, user_id, role)
           SELECT e, u, 'attendee' FROM unnest($1::uuid[], $2::uuid[]) AS x(e, u)
           ON CONFLICT DO NOTHING""", list(events), list(users))


async def drop_attendee_if_no_ticket(conn: asyncpg.Connection, event_id: uuid.UUID, user_id: uuid.UUID) -> None:
    await conn.execute(
        """DELETE FROM event_members m WHERE m.event_id = $1 AND m.user_id = $2 AND m.role = 'attendee'
             AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.event_id = $1 AND t.holder_id = $2
                                                       AND t.status = 'valid')""", event_id, user_id)


async def tickets_of_user(conn: Any, user_id: uuid.UUID) -> list[Ticket]:
    rows = await conn.fetch(
        f"SELECT {TICKET_COLUMNS} FROM tickets WHERE holder_id = $1 AND status = 'valid' ORDER BY issued_at, id",
        user_id)
    return [Ticket.from_record(r) for r in rows]


async def tickets_of_order(conn: Any, order_id: uuid.UUID) -> list[Ticket]:
    rows = await conn.fetch(f"SELECT {TICKET_COLUMNS} FROM tickets WHERE order_id = $1 ORDER BY ticket_type_id, seat_no",
                            order_id)
    return [Ticket.from_record(r) for r in rows]


async def get_ticket(conn: Any, ticket_id: uuid.UUID, *, for_update: bool = False) -> Ticket | None:
    row = await conn.fetchrow(
        f"SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1" + (" FOR UPDATE" if for_update else ""), ticket_id)
    return Ticket.from_record(row) if row else None


async def transfer_ticket(conn: asyncpg.Connection, ticket: Ticket, *, to_user_id: uuid.UUID,
                          new_code: str) -> Ticket:
    """Move a (locked, valid) ticket to another holder with a new code; the old code is void."""
    await conn.execute(
        """INSERT INTO ticket_transfers (ticket_id, from_user_id, to_user_id, old_code, generation)
           VALUES ($1, $2, $3, $4, $5)""", ticket.id, ticket.holder_id, to_user_id, ticket.code, ticket.generation)
    row = await conn.fetchrow(
        f"""UPDATE tickets SET holder_id = $2, code = $3, generation = generation + 1
             WHERE id = $1 AND status = 'valid' AND generation = $4 RETURNING {TICKET_COLUMNS}""",
        ticket.id, to_user_id, new_code, ticket.generation)
    if row is None:
        raise FoyerError("invalid_state", "the ticket changed meanwhile")
    return Ticket.from_record(row)


async def void_tickets(conn: asyncpg.Connection, order_id: uuid.UUID,
                       ticket_ids: Sequence[uuid.UUID] | None = None) -> list[Ticket]:
    """Void the order's valid tickets (all, or `ticket_ids`); returns what was voided."""
    rows = await conn.fetch(
        f"""UPDATE tickets SET status = 'void', voided_at = now()
             WHERE order_id = $1 AND status = 'valid' AND ($2::uuid[] IS NULL OR id = ANY($2::uuid[]))
             RETURNING {TICKET_COLUMNS}""", order_id, list(ticket_ids) if ticket_ids is not None else None)
    return [Ticket.from_record(r) for r in rows]


def since(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None
