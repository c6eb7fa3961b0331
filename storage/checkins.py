"""Check-in scans, entries and per-gate counters in PostgreSQL (migration 0150).

Guarantees (each write runs in the caller's transaction, `core.db.transaction(name)`):
- `claim_scan` inserts the nonce row first: a concurrent duplicate of the same (event, nonce)
  waits on the unique index and then finds the committed answer (`ON CONFLICT DO NOTHING`);
- `open_entry` relies on the partial unique index `checkin_entries_one_open`: of two concurrent
  entry scans of one ticket, exactly one inserts the open entry; the other gets None and reads
  the winner (its row lock is taken with `lock_open_entry`);
- `close_entry` closes the open entry with a conditional UPDATE under its row lock, so one exit
  closes one stay.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg


async def get_scan(conn: Any, event_id: uuid.UUID, nonce: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, fingerprint, result, response FROM checkin_scans WHERE event_id = $1 AND nonce = $2",
        event_id, nonce)


async def claim_scan(conn: asyncpg.Connection, *, event_id: uuid.UUID, nonce: str, fingerprint: bytes, gate: str,
                     direction: str, scanned_at: datetime, scanner_id: uuid.UUID | None, source: str) -> uuid.UUID | None:
    """Insert the scan row (result `pending`); None if this nonce already has a committed scan."""
    return await conn.fetchval(
        """INSERT INTO checkin_scans (event_id, nonce, fingerprint, gate, direction, scanned_at, scanner_id, source,
                                      result, response)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', '{}'::jsonb)
           ON CONFLICT (event_id, nonce) DO NOTHING RETURNING id""",
        event_id, nonce, fingerprint, gate, direction, scanned_at, scanner_id, source)


async def finish_scan(conn: asyncpg.Connection, scan_id: uuid.UUID, *, ticket_id: uuid.UUID | None, result: str,
                      response: dict[str, Any]) -> None:
    await conn.execute("UPDATE checkin_scans SET ticket_id = $2, result = $3, response = $4 WHERE id = $1",
                       scan_id, ticket_id, result, response)


async def mark_superseded(conn: asyncpg.Connection, scan_id: uuid.UUID, by: uuid.UUID) -> None:
    await conn.execute("UPDATE checkin_scans SET superseded_by = $2 WHERE id = $1", scan_id, by)


async def ticket_for_scan(conn: Any, event_id: uuid.UUID, ticket_id: uuid.UUID) -> asyncpg.Record | None:
    """The ticket (of this event), its order's status, type name and holder name."""
    return await conn.fetchrow(
        """SELECT t.id, t.event_id, t.order_id, t.ticket_type_id, t.seat_no, t.status, t.generation,
                  o.status AS order_status, tt.name AS type_name, u.name AS holder_name
             FROM tickets t JOIN orders o ON o.id = t.order_id JOIN ticket_types tt ON tt.id = t.ticket_type_id
             JOIN users u ON u.id = t.holder_id
            WHERE t.id = $1 AND t.event_id = $2""", ticket_id, event_id)


_ENTRY_COLUMNS = "id, ticket_id, entry_scan_id, gate, scanned_at, nonce, exit_scan_id, exit_gate, exited_at"


async def open_entry(conn: asyncpg.Connection, *, event_id: uuid.UUID, ticket_id: uuid.UUID, scan_id: uuid.UUID,
                     gate: str, scanned_at: datetime, nonce: str) -> asyncpg.Record | None:
    """Open a stay for the ticket unless one is open (or the scan predates the ticket's last exit).

    Returns the new entry, or None (then see `lock_open_entry` / `last_closed_after`)."""
    return await conn.fetchrow(
        f"""INSERT INTO checkin_entries (event_id, ticket_id, entry_scan_id, gate, scanned_at, nonce)
            SELECT $1, $2, $3, $4, $5, $6
             WHERE NOT EXISTS (SELECT 1 FROM checkin_entries WHERE ticket_id = $2 AND exited_at > $5)
            ON CONFLICT (ticket_id) WHERE exited_at IS NULL DO NOTHING
            RETURNING {_ENTRY_COLUMNS}""",
        event_id, ticket_id, scan_id, gate, scanned_at, nonce)


async def lock_open_entry(conn: asyncpg.Connection, ticket_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_ENTRY_COLUMNS} FROM checkin_entries WHERE ticket_id = $1 AND exited_at IS NULL FOR UPDATE",
        ticket_id)


async def last_closed_after(conn: Any, ticket_id: uuid.UUID, when: datetime) -> asyncpg.Record | None:
    """The latest closed stay of the ticket that ended after `when` (a scan older than an exit)."""
    return await conn.fetchrow(
        f"""SELECT {_ENTRY_COLUMNS} FROM checkin_entries WHERE ticket_id = $1 AND exited_at > $2
             ORDER BY exited_at DESC LIMIT 1""", ticket_id, when)


async def take_over_entry(conn: asyncpg.Connection, entry_id: uuid.UUID, *, scan_id: uuid.UUID, gate: str,
                          scanned_at: datetime, nonce: str) -> None:
    await conn.execute(
        "UPDATE checkin_entries SET entry_scan_id = $2, gate = $3, scanned_at = $4, nonce = $5 WHERE id = $1",
        entry_id, scan_id, gate, scanned_at, nonce)


async def close_entry(conn: asyncpg.Connection, ticket_id: uuid.UUID, *, scan_id: uuid.UUID, gate: str,
                      scanned_at: datetime) -> asyncpg.Record | None:
    """Close the ticket's open stay if it began at or before `scanned_at`; None if there is none."""
    return await conn.fetchrow(
        f"""UPDATE checkin_entries SET exit_scan_id = $2, exit_gate = $3, exited_at = $4
             WHERE ticket_id = $1 AND exited_at IS NULL AND scanned_at <= $4 RETURNING {_ENTRY_COLUMNS}""",
        ticket_id, scan_id, gate, scanned_at)


async def count(conn: asyncpg.Connection, event_id: uuid.UUID, gate: str, direction: str, result: str) -> None:
    await conn.execute(
        """INSERT INTO checkin_gate_counts (event_id, gate, direction, result, n) VALUES ($1, $2, $3, $4, 1)
           ON CONFLICT (event_id, gate, direction, result) DO UPDATE SET n = checkin_gate_counts.n + 1""",
        event_id, gate, direction, result)


async def stats(conn: Any, event_id: uuid.UUID) -> dict[str, Any]:
    gates = await conn.fetch(
        "SELECT gate, direction, result, n FROM checkin_gate_counts WHERE event_id = $1 ORDER BY gate", event_id)
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM checkin_entries WHERE event_id = $1 AND exited_at IS NULL) AS inside,
                  (SELECT count(DISTINCT ticket_id) FROM checkin_entries WHERE event_id = $1) AS checked_in,
                  (SELECT count(*) FROM tickets WHERE event_id = $1 AND status = 'valid') AS tickets""", event_id)
    inside_by_gate = await conn.fetch(
        """SELECT gate, count(*) AS n FROM checkin_entries WHERE event_id = $1 AND exited_at IS NULL
            GROUP BY gate""", event_id)
    return {"gates": [dict(g) for g in gates], "inside": row["inside"], "checked_in": row["checked_in"],
            "tickets": row["tickets"], "inside_by_gate": {r["gate"]: r["n"] for r in inside_by_gate}}


async def public_key(conn: Any, event_id: uuid.UUID) -> bytes | None:
    value = await conn.fetchval("SELECT public_key FROM event_ticket_keys WHERE event_id = $1", event_id)
    return bytes(value) if value is not None else None


# --- the offline check-in list ------------------------------------------------------------------

async def snapshot_cursor(conn: asyncpg.Connection) -> int:
    """The xmin of this transaction's snapshot: the next delta starts here (see migration 0150)."""
    return int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))


async def list_tickets(conn: asyncpg.Connection, event_id: uuid.UUID, since: int | None) -> list[asyncpg.Record]:
    """Tickets of the event (all, or those whose ticket row or check-in state was written at/after
    cursor `since`), with their order's status and whether they are inside now."""
    select = """SELECT t.id, t.ticket_type_id, t.generation, t.status, o.status AS order_status,
                       u.name AS holder_name,
                       EXISTS (SELECT 1 FROM checkin_entries c WHERE c.ticket_id = t.id AND c.exited_at IS NULL) AS inside
                  FROM tickets t JOIN orders o ON o.id = t.order_id JOIN users u ON u.id = t.holder_id"""
    if since is None:
        return await conn.fetch(select + " WHERE t.event_id = $1 ORDER BY t.id", event_id)
    return await conn.fetch(
        f"""WITH changed AS (
                SELECT id FROM tickets WHERE event_id = $1 AND list_xid >= $2::text::xid8
                UNION
                SELECT ticket_id FROM checkin_entries WHERE event_id = $1 AND list_xid >= $2::text::xid8)
            {select} JOIN changed ON changed.id = t.id ORDER BY t.id""", event_id, str(since))
