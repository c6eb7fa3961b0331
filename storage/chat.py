"""Chat messages, reactions, moderation state (mutes, bans) and reports, in PostgreSQL.

Every function takes the caller's connection; writes belong inside the caller's named
transaction (rooms/chat.py, rooms/moderation.py), which also stages the room event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: uuid.UUID
    room: str
    seq: int
    user_id: uuid.UUID
    text: str
    deleted_at: datetime | None


async def find_by_client_id(conn: Any, room: str, user_id: uuid.UUID, client_id: str) -> tuple[uuid.UUID, int] | None:
    row = await conn.fetchrow(
        "SELECT id, seq FROM chat_messages WHERE room = $1 AND user_id = $2 AND client_id = $3",
        room, user_id, client_id,
    )
    return (row["id"], row["seq"]) if row else None


async def send_checks(conn: Any, room: str, user_id: uuid.UUID, client_id: str
                      ) -> tuple[tuple[uuid.UUID, int] | None, tuple[str, datetime | None] | None]:
    """One round trip for chat:send: (an earlier message with this client_id: (id, seq), the
    user's current ban or mute in the room: (kind, until))."""
    row = await conn.fetchrow(
        """SELECT (SELECT row(id, seq) FROM chat_messages
                    WHERE room = $1 AND user_id = $2 AND client_id = $3) AS dup,
                  (SELECT row(kind, until) FROM room_sanctions
                    WHERE room = $1 AND user_id = $2 AND (until IS NULL OR until > now())
                    ORDER BY kind = 'ban' DESC LIMIT 1) AS sanction""",
        room, user_id, client_id,
    )
    dup = (row["dup"][0], row["dup"][1]) if row["dup"] is not None else None
    sanction = (row["sanction"][0], row["sanction"][1]) if row["sanction"] is not None else None
    return dup, sanction


async def active_sanction(conn: Any, room: str, user_id: uuid.UUID) -> tuple[str, datetime | None] | None:
    """The user's current ban (preferred) or mute in `room`: (kind, until or None)."""
    row = await conn.fetchrow(
        """SELECT kind, until FROM room_sanctions
            WHERE room = $1 AND user_id = $2 AND (until IS NULL OR until > now())
            ORDER BY kind = 'ban' DESC LIMIT 1""",
        room, user_id,
    )
    return (row["kind"], row["until"]) if row else None


async def join_checks(conn: Any, room: str, user_id: uuid.UUID) -> tuple[str | None, datetime | None | bool]:
    """(the user's name, or None if the account is missing/disabled; the room ban: False when not
    banned, else its end or None for indefinitely) in one round trip."""
    row = await conn.fetchrow(
        """SELECT (SELECT name FROM users WHERE id = $2 AND disabled_at IS NULL) AS name,
                  EXISTS (SELECT 1 FROM room_sanctions WHERE room = $1 AND user_id = $2 AND kind = 'ban'
                           AND (until IS NULL OR until > now())) AS banned,
                  (SELECT until FROM room_sanctions WHERE room = $1 AND user_id = $2 AND kind = 'ban'
                    AND (until IS NULL OR until > now())) AS until""",
        room, user_id,
    )
    return row["name"], (row["until"] if row["banned"] else False)


async def is_banned(conn: Any, room: str, user_id: uuid.UUID) -> datetime | None | bool:
    row = await conn.fetchrow(
        """SELECT until FROM room_sanctions WHERE room = $1 AND user_id = $2 AND kind = 'ban'
              AND (until IS NULL OR until > now())""",
        room, user_id,
    )
    if row is None:
        return False
    return row["until"]


async def get_message(conn: Any, room: str, message_id: uuid.UUID, *, for_update: bool = False) -> MessageRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        "SELECT id, room, seq, user_id, text, deleted_at FROM chat_messages WHERE id = $1 AND room = $2" + lock,
        message_id, room,
    )
    return MessageRow(**dict(row)) if row else None


async def insert_message(conn: asyncpg.Connection, *, id: uuid.UUID, room: str, user_id: uuid.UUID, client_id: str,
                         text: str, reply_to: uuid.UUID | None, created_at: datetime) -> None:
    """Raises asyncpg.UniqueViolationError when (room, user, client_id) exists (a concurrent retry)."""
    await conn.execute(
        """INSERT INTO chat_messages (id, room, user_id, client_id, text, reply_to, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        id, room, user_id, client_id, text, reply_to, created_at,
    )


@dataclass(frozen=True, slots=True)
class NewMessage:
    id: uuid.UUID
    user_id: uuid.UUID
    client_id: str
    text: str
    reply_to: uuid.UUID | None
    created_at: datetime


async def insert_messages(conn: asyncpg.Connection, room: str, messages: list[NewMessage]) -> set[uuid.UUID]:
    """Insert a batch; returns the ids actually inserted (a (user, client_id) that already exists,
    e.g. a concurrent retry, is skipped). A reply to a message that no longer exists becomes a
    plain message."""
    rows = await conn.fetch(
        """INSERT INTO chat_messages (id, room, user_id, client_id, text, reply_to, created_at)
           SELECT m.id, $1, m.user_id, m.client_id, m.text,
                  (SELECT p.id FROM chat_messages p WHERE p.id = m.reply_to AND p.room = $1), m.created_at
             FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::timestamptz[])
                  AS m(id, user_id, client_id, text, reply_to, created_at)
           ON CONFLICT ON CONSTRAINT chat_messages_client_id DO NOTHING
           RETURNING id""",
        room, [m.id for m in messages], [m.user_id for m in messages], [m.client_id for m in messages],
        [m.text for m in messages], [m.reply_to for m in messages], [m.created_at for m in messages],
    )
    return {r["id"] for r in rows}


async def set_message_seq(conn: asyncpg.Connection, message_id: uuid.UUID, seq: int) -> None:
    await conn.execute("UPDATE chat_messages SET seq = $2 WHERE id = $1", message_id, seq)


async def edit_message(conn: asyncpg.Connection, message_id: uuid.UUID, text: str) -> datetime:
    return await conn.fetchval(
        "UPDATE chat_messages SET text = $2, edited_at = now() WHERE id = $1 RETURNING edited_at", message_id, text
    )


async def delete_message(conn: asyncpg.Connection, message_id: uuid.UUID, by: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE chat_messages SET deleted_at = now(), deleted_by = $2 WHERE id = $1 AND deleted_at IS NULL",
        message_id, by,
    )


async def set_reaction(conn: asyncpg.Connection, message_id: uuid.UUID, user_id: uuid.UUID, emoji: str,
                       on: bool) -> tuple[bool, int]:
    """Add or remove one user's reaction; returns (changed, count of that emoji now)."""
    if on:
        status = await conn.execute(
            """INSERT INTO chat_reactions (message_id, user_id, emoji) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING""", message_id, user_id, emoji)
    else:
        status = await conn.execute(
            "DELETE FROM chat_reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3",
            message_id, user_id, emoji)
    changed = not status.endswith(" 0")
    count = await conn.fetchval(
        "SELECT count(*) FROM chat_reactions WHERE message_id = $1 AND emoji = $2", message_id, emoji
    )
    return changed, count


async def history(conn: Any, room: str, *, upto_seq: int, limit: int) -> list[dict[str, Any]]:
    """The last `limit` visible messages with seq <= upto_seq, oldest first, in their current
    state (edited text, reaction counts)."""
    if limit <= 0:
        return []
    rows = await conn.fetch(
        """SELECT m.id, m.seq, m.user_id, u.name, m.text, m.reply_to, m.created_at, m.edited_at,
                  coalesce((SELECT jsonb_object_agg(x.emoji, x.n) FROM
                             (SELECT emoji, count(*) AS n FROM chat_reactions r
                               WHERE r.message_id = m.id GROUP BY emoji) x), '{}'::jsonb) AS reactions
             FROM chat_messages m JOIN users u ON u.id = m.user_id
            WHERE m.room = $1 AND m.deleted_at IS NULL AND m.seq > 0 AND m.seq <= $2
            ORDER BY m.seq DESC LIMIT $3""",
        room, upto_seq, limit,
    )
    return [dict(r) for r in reversed(rows)]


async def set_sanction(conn: asyncpg.Connection, *, room: str, user_id: uuid.UUID, kind: str,
                       until: datetime | None, reason: str, by: uuid.UUID) -> None:
    await conn.execute(
        """INSERT INTO room_sanctions (room, user_id, kind, until, reason, created_by)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (room, user_id, kind) DO UPDATE
             SET until = excluded.until, reason = excluded.reason, created_by = excluded.created_by,
                 created_at = now()""",
        room, user_id, kind, until, reason, by,
    )


async def lift_sanction(conn: asyncpg.Connection, *, room: str, user_id: uuid.UUID, kind: str) -> bool:
    status = await conn.execute(
        "DELETE FROM room_sanctions WHERE room = $1 AND user_id = $2 AND kind = $3", room, user_id, kind
    )
    return not status.endswith(" 0")


async def insert_report(conn: asyncpg.Connection, *, room: str, message_id: uuid.UUID, reporter_id: uuid.UUID,
                        reason: str) -> tuple[uuid.UUID, bool]:
    """One report per reporter and message: returns (report id, created)."""
    row = await conn.fetchrow(
        """INSERT INTO chat_reports (room, message_id, reporter_id, reason) VALUES ($1, $2, $3, $4)
           ON CONFLICT (message_id, reporter_id) DO NOTHING RETURNING id""",
        room, message_id, reporter_id, reason,
    )
    if row is not None:
        return row["id"], True
    existing = await conn.fetchval(
        "SELECT id FROM chat_reports WHERE message_id = $1 AND reporter_id = $2", message_id, reporter_id
    )
    return existing, False


async def user_is_known(conn: Any, user_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id))
