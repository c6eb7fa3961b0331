"""Networking in PostgreSQL: the opt-in directory, connection requests, blocks.

Every function takes the caller's connection; multi-step writes belong inside the caller's
named transaction (rooms/networking.py).

Guarantees:
- one connection per pair of users per event (unique on the canonical pair): concurrent or
  mutual requests cannot create two;
- the directory lists only opted-in entries of the event, never the caller, never anyone the
  caller blocked or who blocked the caller (one query, keyset-paged by name then id).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

_ENTRY = """e.event_id, e.user_id, u.name, e.title, e.company, e.interests, e.bio, e.updated_at"""
_CONN = """c.id, c.event_id, c.requester_id, c.addressee_id, c.status, c.message, c.silenced, c.created_at,
           c.responded_at"""


@dataclass(frozen=True, slots=True)
class Connection:
    id: uuid.UUID
    event_id: uuid.UUID
    requester_id: uuid.UUID
    addressee_id: uuid.UUID
    status: str
    message: str
    silenced: bool
    created_at: datetime
    responded_at: datetime | None

    def other(self, user_id: uuid.UUID) -> uuid.UUID:
        return self.addressee_id if user_id == self.requester_id else self.requester_id

    def involves(self, user_id: uuid.UUID) -> bool:
        return user_id in (self.requester_id, self.addressee_id)


def _conn(row: Any) -> Connection:
    return Connection(**dict(row))


# --- directory ------------------------------------------------------------------------------------

async def upsert_entry(conn: asyncpg.Connection, event_id: uuid.UUID, user_id: uuid.UUID, *, title: str,
                       company: str, interests: list[str], bio: str) -> dict[str, Any]:
    await conn.execute(
        """INSERT INTO directory_entries (event_id, user_id, title, company, interests, bio)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (event_id, user_id) DO UPDATE SET title = excluded.title, company = excluded.company,
               interests = excluded.interests, bio = excluded.bio, updated_at = now()""",
        event_id, user_id, title, company, interests, bio)
    entry = await get_entry(conn, event_id, user_id)
    assert entry is not None
    return entry


async def get_entry(conn: Any, event_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"""SELECT {_ENTRY} FROM directory_entries e JOIN users u ON u.id = e.user_id
             WHERE e.event_id = $1 AND e.user_id = $2 AND u.disabled_at IS NULL""", event_id, user_id)
    return dict(row) if row else None


async def delete_entry(conn: Any, event_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    status = await conn.execute("DELETE FROM directory_entries WHERE event_id = $1 AND user_id = $2",
                                event_id, user_id)
    return not status.endswith(" 0")


async def browse(conn: Any, event_id: uuid.UUID, viewer: uuid.UUID, *, q: str | None, interest: str | None,
                 after: tuple[str, uuid.UUID] | None, limit: int) -> list[dict[str, Any]]:
    """Other opted-in attendees, by name then id, after the keyset `after`; blocks either way excluded.
    `q` matches name, title, company, interests and bio (case-insensitive substring)."""
    pattern = None
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await conn.fetch(
        f"""SELECT {_ENTRY} FROM directory_entries e JOIN users u ON u.id = e.user_id
             WHERE e.event_id = $1 AND e.user_id <> $2 AND u.disabled_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM user_blocks b
                                WHERE (b.blocker_id = $2 AND b.blocked_id = e.user_id)
                                   OR (b.blocker_id = e.user_id AND b.blocked_id = $2))
               AND ($3::text IS NULL OR (u.name || ' ' || e.title || ' ' || e.company || ' '
                                         || array_to_string(e.interests, ' ') || ' ' || e.bio) ILIKE $3)
               AND ($4::text IS NULL OR e.interests @> ARRAY[$4::text])
               AND ($5::text IS NULL OR (u.name, e.user_id) > ($5::text, $6::uuid))
             ORDER BY u.name, e.user_id LIMIT $7""",
        event_id, viewer, pattern, interest, after[0] if after else None, after[1] if after else None, limit)
    return [dict(r) for r in rows]


# --- blocks ---------------------------------------------------------------------------------------

async def block(conn: asyncpg.Connection, blocker: uuid.UUID, blocked: uuid.UUID) -> bool:
    return bool(await conn.fetchval(
        "INSERT INTO user_blocks (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        blocker, blocked))


async def unblock(conn: Any, blocker: uuid.UUID, blocked: uuid.UUID) -> bool:
    status = await conn.execute("DELETE FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2", blocker, blocked)
    return not status.endswith(" 0")


async def blocks_between(conn: Any, a: uuid.UUID, b: uuid.UUID) -> tuple[bool, bool]:
    """(a blocks b, b blocks a)."""
    row = await conn.fetchrow(
        """SELECT EXISTS (SELECT 1 FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2) AS ab,
                  EXISTS (SELECT 1 FROM user_blocks WHERE blocker_id = $2 AND blocked_id = $1) AS ba""", a, b)
    return row["ab"], row["ba"]


async def list_blocks(conn: Any, blocker: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT b.blocked_id AS user_id, u.name, b.created_at FROM user_blocks b JOIN users u ON u.id = b.blocked_id
            WHERE b.blocker_id = $1 ORDER BY b.created_at DESC""", blocker)
    return [dict(r) for r in rows]


async def silence_requests(conn: asyncpg.Connection, *, from_user: uuid.UUID, to_user: uuid.UUID) -> None:
    """Pending requests from `from_user` to `to_user` vanish for the addressee only."""
    await conn.execute(
        """UPDATE connections SET silenced = true
            WHERE requester_id = $1 AND addressee_id = $2 AND status = 'pending'""", from_user, to_user)


async def drop_requests(conn: asyncpg.Connection, *, from_user: uuid.UUID, to_user: uuid.UUID) -> None:
    await conn.execute(
        "DELETE FROM connections WHERE requester_id = $1 AND addressee_id = $2 AND status = 'pending'",
        from_user, to_user)


# --- connections ----------------------------------------------------------------------------------

async def get_pair(conn: Any, event_id: uuid.UUID, a: uuid.UUID, b: uuid.UUID, *,
                   for_update: bool = False) -> Connection | None:
    lo, hi = sorted((a, b))
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_CONN} FROM connections c WHERE c.event_id = $1 AND c.user_lo = $2 AND c.user_hi = $3{lock}",
        event_id, lo, hi)
    return _conn(row) if row else None


async def insert_request(conn: asyncpg.Connection, event_id: uuid.UUID, requester: uuid.UUID, addressee: uuid.UUID,
                         *, message: str, silenced: bool) -> Connection | None:
    """The new pending request, or None when the pair already has a connection (any status)."""
    lo, hi = sorted((requester, addressee))
    row = await conn.fetchrow(
        f"""INSERT INTO connections AS c (event_id, requester_id, addressee_id, user_lo, user_hi, message, silenced)
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id, user_lo, user_hi) DO NOTHING
            RETURNING {_CONN}""", event_id, requester, addressee, lo, hi, message, silenced)
    return _conn(row) if row else None


async def get_connection(conn: Any, connection_id: uuid.UUID, *, for_update: bool = False) -> Connection | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_CONN} FROM connections c WHERE c.id = $1{lock}", connection_id)
    return _conn(row) if row else None


async def connection_event(conn: Any, connection_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval("SELECT event_id FROM connections WHERE id = $1", connection_id)


async def respond(conn: asyncpg.Connection, connection_id: uuid.UUID, status: str) -> Connection:
    row = await conn.fetchrow(
        f"""UPDATE connections c SET status = $2, responded_at = now() WHERE c.id = $1 RETURNING {_CONN}""",
        connection_id, status)
    return _conn(row)


async def delete_connection(conn: Any, connection_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM connections WHERE id = $1", connection_id)


async def list_connections(conn: Any, event_id: uuid.UUID, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """The user's connections and requests in an event with the other party's name and entry;
    incoming silenced requests (from users the caller blocks) are left out."""
    rows = await conn.fetch(
        f"""SELECT {_CONN}, u.name AS other_name, e.title AS other_title, e.company AS other_company
              FROM connections c
              JOIN users u ON u.id = CASE WHEN c.requester_id = $2 THEN c.addressee_id ELSE c.requester_id END
              LEFT JOIN directory_entries e ON e.event_id = c.event_id AND e.user_id = u.id
             WHERE c.event_id = $1 AND (c.requester_id = $2 OR (c.addressee_id = $2 AND NOT c.silenced))
             ORDER BY c.created_at DESC""", event_id, user_id)
    return [dict(r) for r in rows]
