"""Seat maps, seats and seat assignments in PostgreSQL (migration 0160).

Guarantees:
- at most one active assignment per (event, seat): the partial unique index
  `seat_assignments_one_active` refuses a second one, whatever the application believed;
- callers that activate assignments (`assign`, `reactivate`) hold the row lock of the seats'
  ticket type (the hold batch locks it; `lock_types` here), so reads of free seats made under
  that lock stay true until commit;
- seats are released by triggers in the transaction that expires, cancels or refunds the order,
  or voids the ticket (see the migration).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

SEAT_COLUMNS = """s.id, s.ticket_type_id, s.section_id, sec.name AS section, sec.rank, sec.position AS section_position,
                  s.row_label, s.row_no, s.seat_no, s.label, s.blocked"""


async def lock_type(conn: asyncpg.Connection, event_id: uuid.UUID, type_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, capacity, sold, held, status FROM ticket_types WHERE event_id = $1 AND id = $2 FOR UPDATE",
        event_id, type_id)


async def lock_types(conn: asyncpg.Connection, type_ids: Iterable[uuid.UUID]) -> None:
    await conn.execute("SELECT 1 FROM ticket_types WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
                       sorted(set(type_ids)))


async def get_map(conn: Any, type_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, event_id, ticket_type_id, name FROM seat_maps WHERE ticket_type_id = $1",
                               type_id)


async def delete_map(conn: asyncpg.Connection, type_id: uuid.UUID) -> bool:
    return (await conn.execute("DELETE FROM seat_maps WHERE ticket_type_id = $1", type_id)) != "DELETE 0"


async def active_assignments_of_type(conn: Any, type_id: uuid.UUID) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM seat_assignments WHERE ticket_type_id = $1 AND released_at IS NULL", type_id)


async def create_map(conn: asyncpg.Connection, *, event_id: uuid.UUID, type_id: uuid.UUID, name: str,
                     sections: Sequence[tuple[str, int, int]],
                     seats: Sequence[tuple[int, str, int, int, str, bool]]) -> uuid.UUID:
    """sections: (name, rank, position); seats: (section index, row_label, row_no, seat_no, label, blocked)."""
    map_id = await conn.fetchval(
        "INSERT INTO seat_maps (event_id, ticket_type_id, name) VALUES ($1, $2, $3) RETURNING id",
        event_id, type_id, name)
    rows = await conn.fetch(
        """INSERT INTO seat_sections (map_id, name, rank, position)
           SELECT $1, n, r, p FROM unnest($2::text[], $3::int[], $4::int[]) AS x(n, r, p) RETURNING id, position""",
        map_id, [s[0] for s in sections], [s[1] for s in sections], [s[2] for s in sections])
    section_ids = {r["position"]: r["id"] for r in rows}
    await conn.execute(
        """INSERT INTO seats (event_id, map_id, ticket_type_id, section_id, row_label, row_no, seat_no, label, blocked)
           SELECT $1, $2, $3, sec, rl, rn, sn, lb, bl
             FROM unnest($4::uuid[], $5::text[], $6::int[], $7::int[], $8::text[], $9::bool[])
                  AS x(sec, rl, rn, sn, lb, bl)""",
        event_id, map_id, type_id, [section_ids[sections[s[0]][2]] for s in seats], [s[1] for s in seats],
        [s[2] for s in seats], [s[3] for s in seats], [s[4] for s in seats], [s[5] for s in seats])
    return map_id


async def seats_with_state(conn: Any, type_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every seat of the type's map with `state`: blocked | held | sold | available."""
    return await conn.fetch(
        f"""SELECT {SEAT_COLUMNS},
                   CASE WHEN s.blocked THEN 'blocked'
                        WHEN o.status = 'held' THEN 'held'
                        WHEN o.status IS NOT NULL THEN 'sold'
                        ELSE 'available' END AS state
              FROM seats s JOIN seat_sections sec ON sec.id = s.section_id
              LEFT JOIN seat_assignments a ON a.seat_id = s.id AND a.released_at IS NULL
              LEFT JOIN orders o ON o.id = a.order_id
             WHERE s.ticket_type_id = $1
             ORDER BY sec.rank, sec.position, s.row_no, s.seat_no""", type_id)


async def seated_types_of_event(conn: Any, event_id: uuid.UUID) -> set[uuid.UUID]:
    rows = await conn.fetch("SELECT ticket_type_id FROM seat_maps WHERE event_id = $1", event_id)
    return {r["ticket_type_id"] for r in rows}


async def seats_by_id(conn: Any, seat_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    """The seats with `taken` (an active assignment exists)."""
    rows = await conn.fetch(
        f"""SELECT {SEAT_COLUMNS},
                   EXISTS (SELECT 1 FROM seat_assignments a WHERE a.seat_id = s.id AND a.released_at IS NULL) AS taken
              FROM seats s JOIN seat_sections sec ON sec.id = s.section_id WHERE s.id = ANY($1::uuid[])""",
        list(set(seat_ids)))
    return {r["id"]: r for r in rows}


async def seats_for_allocation(conn: Any, type_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every seat of the type with `free` (not blocked, no active assignment), best first."""
    return await conn.fetch(
        f"""SELECT {SEAT_COLUMNS},
                   NOT s.blocked AND NOT EXISTS (SELECT 1 FROM seat_assignments a
                                                  WHERE a.seat_id = s.id AND a.released_at IS NULL) AS free
              FROM seats s JOIN seat_sections sec ON sec.id = s.section_id
             WHERE s.ticket_type_id = $1
             ORDER BY sec.rank, sec.position, s.row_no, s.seat_no""", type_id)


async def assign(conn: asyncpg.Connection, rows: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID, int]]) -> None:
    """Bulk insert (event_id, seat_id, order_id, ticket_type_id, seat_index) active assignments."""
    if not rows:
        return
    cols = [list(c) for c in zip(*rows, strict=True)]
    await conn.execute(
        """INSERT INTO seat_assignments (event_id, seat_id, order_id, ticket_type_id, seat_index)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int[])""", *cols)


async def reactivate(conn: asyncpg.Connection, order_id: uuid.UUID) -> bool | None:
    """Re-activate the released seats of an (expired) order if every one is free: True; False if
    one is taken (nothing changed); None if the order never had seats. Caller holds the types' locks."""
    rows = await conn.fetch(
        """SELECT a.id, a.seat_id, a.event_id,
                  EXISTS (SELECT 1 FROM seat_assignments b WHERE b.seat_id = a.seat_id AND b.released_at IS NULL)
                  AS taken
             FROM seat_assignments a
            WHERE a.order_id = $1
              AND a.released_at = (SELECT max(released_at) FROM seat_assignments WHERE order_id = $1)""", order_id)
    if not rows:
        return None
    if any(r["taken"] for r in rows):
        return False
    await conn.execute("UPDATE seat_assignments SET released_at = NULL WHERE id = ANY($1::uuid[])",
                       [r["id"] for r in rows])
    return True


async def order_seats(conn: Any, order_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT a.ticket_type_id, a.seat_index, {SEAT_COLUMNS}
              FROM seat_assignments a JOIN seats s ON s.id = a.seat_id JOIN seat_sections sec ON sec.id = s.section_id
             WHERE a.order_id = $1 AND a.released_at IS NULL ORDER BY a.ticket_type_id, a.seat_index""", order_id)


async def ticket_seat(conn: Any, order_id: uuid.UUID, type_id: uuid.UUID, seat_index: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT {SEAT_COLUMNS}
              FROM seat_assignments a JOIN seats s ON s.id = a.seat_id JOIN seat_sections sec ON sec.id = s.section_id
             WHERE a.order_id = $1 AND a.ticket_type_id = $2 AND a.seat_index = $3 AND a.released_at IS NULL""",
        order_id, type_id, seat_index)


async def set_blocked(conn: asyncpg.Connection, type_id: uuid.UUID, seat_ids: Sequence[uuid.UUID],
                      blocked: bool) -> tuple[int, list[uuid.UUID]]:
    """Block/unblock free seats of the type: (seats changed, seats refused because sold or held)."""
    taken = await conn.fetch(
        """SELECT seat_id FROM seat_assignments WHERE seat_id = ANY($1::uuid[]) AND released_at IS NULL""",
        list(seat_ids))
    if taken and blocked:
        return 0, [r["seat_id"] for r in taken]
    result = await conn.execute(
        "UPDATE seats SET blocked = $3 WHERE ticket_type_id = $1 AND id = ANY($2::uuid[]) AND blocked <> $3",
        type_id, list(seat_ids), blocked)
    return int(result.split()[-1]), []


async def count_seats(conn: Any, type_id: uuid.UUID) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE NOT blocked) AS open FROM seats WHERE ticket_type_id = $1",
        type_id)
    return row["total"], row["open"]

