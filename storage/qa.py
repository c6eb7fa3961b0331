"""Q&A in PostgreSQL: questions, upvotes, per-session settings, the moderation audit trail.

Every function takes the caller's connection; writes belong inside the caller's named
transaction (rooms/qa.py), which also stages the room events.

Guarantees enforced here (by PostgreSQL, not by the caller's checks):
- one upvote per user per question (primary key of `question_upvotes`): concurrent double
  submits, on any nodes, count once; `questions.upvotes` moves in the same transaction;
- one pinned question per session (partial unique index); `lock_session` serialises the
  moderation actions of a session so a pin never races another pin;
- a retried ask with the same `client_id` finds the first question (unique constraint).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

_COLUMNS = """q.id, q.session_id, q.event_id, q.user_id, u.name AS author_name, q.text, q.anonymous,
              q.status, q.approved_at, q.answered_at, q.pinned, q.upvotes, q.created_at, q.edited_at"""


@dataclass(frozen=True, slots=True)
class Question:
    id: uuid.UUID
    session_id: uuid.UUID
    event_id: uuid.UUID
    user_id: uuid.UUID
    author_name: str
    text: str
    anonymous: bool
    status: str  # pending | visible | dismissed
    approved_at: datetime | None
    answered_at: datetime | None
    pinned: bool
    upvotes: int
    created_at: datetime
    edited_at: datetime | None


@dataclass(frozen=True, slots=True)
class QaSession:
    session_id: uuid.UUID
    premoderation: bool
    dismissed_count: int


def _q(row: Any) -> Question:
    return Question(**dict(row))


async def lock_session(conn: asyncpg.Connection, session_id: uuid.UUID, event_id: uuid.UUID) -> QaSession:
    """The session's Q&A row, created if needed and locked until commit (moderation actions)."""
    await conn.execute(
        "INSERT INTO qa_sessions (session_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", session_id, event_id
    )
    row = await conn.fetchrow(
        "SELECT session_id, premoderation, dismissed_count FROM qa_sessions WHERE session_id = $1 FOR UPDATE",
        session_id,
    )
    return QaSession(**dict(row))


async def get_session(conn: Any, session_id: uuid.UUID) -> QaSession:
    row = await conn.fetchrow(
        "SELECT session_id, premoderation, dismissed_count FROM qa_sessions WHERE session_id = $1", session_id
    )
    return QaSession(**dict(row)) if row else QaSession(session_id, False, 0)


async def set_premoderation(conn: asyncpg.Connection, session_id: uuid.UUID, on: bool) -> None:
    await conn.execute(
        "UPDATE qa_sessions SET premoderation = $2, updated_at = now() WHERE session_id = $1", session_id, on
    )


async def count_dismissed(conn: asyncpg.Connection, session_id: uuid.UUID) -> int:
    return await conn.fetchval(
        """UPDATE qa_sessions SET dismissed_count = dismissed_count + 1, updated_at = now()
            WHERE session_id = $1 RETURNING dismissed_count""", session_id)


async def find_by_client_id(conn: Any, session_id: uuid.UUID, user_id: uuid.UUID,
                            client_id: str) -> tuple[uuid.UUID, str] | None:
    row = await conn.fetchrow(
        "SELECT id, status FROM questions WHERE session_id = $1 AND user_id = $2 AND client_id = $3",
        session_id, user_id, client_id,
    )
    return (row["id"], row["status"]) if row else None


async def insert_question(conn: asyncpg.Connection, *, id: uuid.UUID, session_id: uuid.UUID, event_id: uuid.UUID,
                          user_id: uuid.UUID, client_id: str, text: str, anonymous: bool, status: str,
                          created_at: datetime) -> None:
    """Raises asyncpg.UniqueViolationError when (session, user, client_id) exists (a concurrent retry)."""
    await conn.execute(
        """INSERT INTO questions (id, session_id, event_id, user_id, client_id, text, anonymous, status, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        id, session_id, event_id, user_id, client_id, text, anonymous, status, created_at,
    )


async def get_question(conn: Any, question_id: uuid.UUID, *, for_update: bool = False) -> Question | None:
    lock = " FOR UPDATE OF q" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM questions q JOIN users u ON u.id = q.user_id WHERE q.id = $1{lock}", question_id
    )
    return _q(row) if row else None


async def edit_question(conn: asyncpg.Connection, question_id: uuid.UUID, text: str) -> datetime:
    return await conn.fetchval(
        "UPDATE questions SET text = $2, edited_at = now() WHERE id = $1 RETURNING edited_at", question_id, text
    )


async def set_upvote(conn: asyncpg.Connection, question_id: uuid.UUID, user_id: uuid.UUID,
                     on: bool) -> tuple[bool, int]:
    """Add or remove one user's upvote; returns (changed, upvotes now). A concurrent duplicate
    waits for the first insert to commit and then changes nothing."""
    if on:
        changed = await conn.fetchval(
            """INSERT INTO question_upvotes (question_id, user_id) VALUES ($1, $2)
               ON CONFLICT DO NOTHING RETURNING true""", question_id, user_id)
        delta = 1
    else:
        changed = await conn.fetchval(
            "DELETE FROM question_upvotes WHERE question_id = $1 AND user_id = $2 RETURNING true", question_id, user_id)
        delta = -1
    if changed:
        count = await conn.fetchval(
            "UPDATE questions SET upvotes = upvotes + $2 WHERE id = $1 RETURNING upvotes", question_id, delta)
    else:
        count = await conn.fetchval("SELECT upvotes FROM questions WHERE id = $1", question_id)
    return bool(changed), count


async def approve(conn: asyncpg.Connection, question_id: uuid.UUID, by: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE questions SET status = 'visible', approved_at = now(), approved_by = $2 WHERE id = $1",
        question_id, by)


async def dismiss(conn: asyncpg.Connection, question_id: uuid.UUID) -> None:
    await conn.execute("UPDATE questions SET status = 'dismissed', pinned = false WHERE id = $1", question_id)


async def set_answered(conn: asyncpg.Connection, question_id: uuid.UUID, by: uuid.UUID, answered: bool) -> None:
    await conn.execute(
        """UPDATE questions SET answered_at = CASE WHEN $3 THEN now() END,
                                answered_by = CASE WHEN $3 THEN $2::uuid END WHERE id = $1""",
        question_id, by, answered)


async def pin(conn: asyncpg.Connection, session_id: uuid.UUID, question_id: uuid.UUID | None) -> uuid.UUID | None:
    """Pin `question_id` (None: unpin all); returns the previously pinned question, if any.
    Call with the session locked (`lock_session`)."""
    previous = await conn.fetchval(
        "UPDATE questions SET pinned = false WHERE session_id = $1 AND pinned RETURNING id", session_id)
    if question_id is not None:
        await conn.execute("UPDATE questions SET pinned = true WHERE id = $1", question_id)
    return previous


async def take_unsent_votes(conn: asyncpg.Connection, session_id: uuid.UUID) -> dict[str, int]:
    """Counts of visible questions changed since the last `qa:votes` event, marked as sent."""
    rows = await conn.fetch(
        """UPDATE questions SET upvotes_sent = upvotes
            WHERE session_id = $1 AND upvotes <> upvotes_sent RETURNING id, upvotes, status""", session_id)
    return {str(r["id"]): r["upvotes"] for r in rows if r["status"] == "visible"}


async def list_visible(conn: Any, session_id: uuid.UUID, *, order: str, limit: int, offset: int = 0) -> list[Question]:
    """Visible questions (answered ones included), by votes (then newest) or newest first."""
    by = "q.upvotes DESC, q.created_at DESC" if order == "votes" else "q.created_at DESC"
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM questions q JOIN users u ON u.id = q.user_id
             WHERE q.session_id = $1 AND q.status = 'visible' ORDER BY {by}, q.id LIMIT $2 OFFSET $3""",
        session_id, limit, offset)
    return [_q(r) for r in rows]


async def count_visible(conn: Any, session_id: uuid.UUID) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM questions WHERE session_id = $1 AND status = 'visible'", session_id)


async def pinned_id(conn: Any, session_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval("SELECT id FROM questions WHERE session_id = $1 AND pinned", session_id)


async def pending_for_event(conn: Any, event_id: uuid.UUID, *, limit: int) -> list[Question]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM questions q JOIN users u ON u.id = q.user_id
             WHERE q.event_id = $1 AND q.status = 'pending' ORDER BY q.created_at LIMIT $2""",
        event_id, limit)
    return [_q(r) for r in rows]


async def mine(conn: Any, session_id: uuid.UUID, user_id: uuid.UUID) -> tuple[list[Question], list[str]]:
    """The user's own questions in a session (any status) and the ids of questions they upvoted."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM questions q JOIN users u ON u.id = q.user_id
             WHERE q.session_id = $1 AND q.user_id = $2 ORDER BY q.created_at""", session_id, user_id)
    upvoted = await conn.fetch(
        """SELECT v.question_id FROM question_upvotes v JOIN questions q ON q.id = v.question_id
            WHERE q.session_id = $1 AND v.user_id = $2""", session_id, user_id)
    return [_q(r) for r in rows], [str(r["question_id"]) for r in upvoted]


async def audit(conn: asyncpg.Connection, *, event_id: uuid.UUID, session_id: uuid.UUID,
                question_id: uuid.UUID | None, actor_id: uuid.UUID, action: str,
                detail: dict[str, Any] | None = None) -> None:
    await conn.execute(
        """INSERT INTO qa_audit (event_id, session_id, question_id, actor_id, action, detail)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        event_id, session_id, question_id, actor_id, action, detail or {})


async def audit_trail(conn: Any, event_id: uuid.UUID, *, session_id: uuid.UUID | None, before: int | None,
                      limit: int) -> list[dict[str, Any]]:
    """Newest first; `before` is an audit id (keyset paging)."""
    rows = await conn.fetch(
        """SELECT a.id, a.session_id, a.question_id, a.action, a.detail, a.created_at,
                  a.actor_id, u.name AS actor_name, q.text AS question_text
             FROM qa_audit a LEFT JOIN users u ON u.id = a.actor_id LEFT JOIN questions q ON q.id = a.question_id
            WHERE a.event_id = $1 AND ($2::uuid IS NULL OR a.session_id = $2)
              AND ($3::bigint IS NULL OR a.id < $3)
            ORDER BY a.id DESC LIMIT $4""",
        event_id, session_id, before, limit)
    return [dict(r) for r in rows]
