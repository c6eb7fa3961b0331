"""Registration form questions and answers in PostgreSQL (migration 0170)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

QUESTION_COLUMNS = ("id, event_id, label, help, kind, required, options, ticket_type_ids, min_value, max_value, "
                    "max_length, position, status")
_FIELDS = frozenset({"label", "help", "kind", "required", "options", "ticket_type_ids", "min_value", "max_value",
                     "max_length", "position", "status"})


async def create_question(conn: asyncpg.Connection, event_id: uuid.UUID, fields: dict[str, Any]) -> asyncpg.Record:
    cols = [c for c in fields if c in _FIELDS]
    return await conn.fetchrow(
        f"INSERT INTO form_questions (event_id, {', '.join(cols)}) "
        f"VALUES ($1, {', '.join(f'${i + 2}' for i in range(len(cols)))}) RETURNING {QUESTION_COLUMNS}",
        event_id, *[fields[c] for c in cols])


async def update_question(conn: asyncpg.Connection, event_id: uuid.UUID, question_id: uuid.UUID,
                          fields: dict[str, Any]) -> asyncpg.Record | None:
    cols = [c for c in fields if c in _FIELDS]
    if not cols:
        return await get_question(conn, event_id, question_id)
    sets = ", ".join(f"{c} = ${i + 3}" for i, c in enumerate(cols))
    return await conn.fetchrow(
        f"UPDATE form_questions SET {sets}, updated_at = now() WHERE event_id = $1 AND id = $2 "
        f"RETURNING {QUESTION_COLUMNS}", event_id, question_id, *[fields[c] for c in cols])


async def get_question(conn: Any, event_id: uuid.UUID, question_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {QUESTION_COLUMNS} FROM form_questions WHERE event_id = $1 AND id = $2",
                               event_id, question_id)


async def list_questions(conn: Any, event_id: uuid.UUID, *, active_only: bool = True) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {QUESTION_COLUMNS} FROM form_questions WHERE event_id = $1 AND (NOT $2 OR status = 'active')
             ORDER BY position, created_at""", event_id, active_only)


async def types_of_event(conn: Any, event_id: uuid.UUID, type_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    rows = await conn.fetch("SELECT id FROM ticket_types WHERE event_id = $1 AND id = ANY($2::uuid[])",
                            event_id, list(type_ids))
    return {r["id"] for r in rows}


async def insert_order_answers(conn: asyncpg.Connection,
                               rows: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID, dict[str, Any]]]) -> None:
    """Bulk insert (event_id, order_id, user_id, answers) order-level answers."""
    if not rows:
        return
    cols = [list(c) for c in zip(*rows, strict=True)]
    await conn.execute(
        """INSERT INTO form_answers (event_id, order_id, user_id, answers)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::jsonb[])""", *cols)


async def ticket_for_holder(conn: Any, ticket_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT t.id, t.event_id, t.order_id, t.ticket_type_id, t.holder_id, t.status,
                  e.starts_at <= now() AS started
             FROM tickets t JOIN events e ON e.id = t.event_id WHERE t.id = $1""", ticket_id)


async def answers_of_ticket(conn: Any, ticket_id: uuid.UUID, order_id: uuid.UUID) -> dict[str, Any]:
    """The holder's own answers if any, else the order's."""
    value = await conn.fetchval(
        """SELECT answers FROM form_answers WHERE ticket_id = $1 OR (order_id = $2 AND ticket_id IS NULL)
            ORDER BY ticket_id NULLS LAST LIMIT 1""", ticket_id, order_id)
    return value or {}


async def upsert_ticket_answers(conn: asyncpg.Connection, *, event_id: uuid.UUID, order_id: uuid.UUID,
                                ticket_id: uuid.UUID, user_id: uuid.UUID, answers: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO form_answers (event_id, order_id, ticket_id, user_id, answers) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (ticket_id) WHERE ticket_id IS NOT NULL
           DO UPDATE SET answers = EXCLUDED.answers, user_id = EXCLUDED.user_id, updated_at = now()""",
        event_id, order_id, ticket_id, user_id, answers)
