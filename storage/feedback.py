"""Ratings (1–5) and comments per user per session and per user for an event.

Guarantees: one row per (user, session) and one per (user, event) (partial unique indexes), so
`upsert` changes the existing rating instead of adding one, also when two requests race.
Comments are returned only by `comments` (organizer view); summaries never include them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

_COLS = "id, event_id, session_id, user_id, rating, comment, created_at, updated_at"


async def upsert(conn: asyncpg.Connection, *, event_id: uuid.UUID, session_id: uuid.UUID | None,
                 user_id: uuid.UUID, rating: int, comment: str | None) -> tuple[asyncpg.Record, int | None]:
    """Insert or change the caller's feedback; returns (row, previous rating or None)."""
    if session_id is not None:
        where, args = "session_id = $1 AND user_id = $2", (session_id, user_id)
        conflict = "(session_id, user_id) WHERE session_id IS NOT NULL"
    else:
        where, args = "event_id = $1 AND user_id = $2 AND session_id IS NULL", (event_id, user_id)
        conflict = "(event_id, user_id) WHERE session_id IS NULL"
    previous = await conn.fetchval(f"SELECT rating FROM feedback WHERE {where} FOR UPDATE", *args)
    row = await conn.fetchrow(
        f"""INSERT INTO feedback (event_id, session_id, user_id, rating, comment) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT {conflict} DO UPDATE
               SET rating = EXCLUDED.rating, comment = EXCLUDED.comment, updated_at = now()
            RETURNING {_COLS}""",
        event_id, session_id, user_id, rating, comment,
    )
    return row, previous


async def mine(conn: asyncpg.Connection | asyncpg.Pool, *, user_id: uuid.UUID, event_id: uuid.UUID | None = None,
               session_id: uuid.UUID | None = None) -> asyncpg.Record | None:
    if session_id is not None:
        return await conn.fetchrow(f"SELECT {_COLS} FROM feedback WHERE session_id = $1 AND user_id = $2",
                                   session_id, user_id)
    return await conn.fetchrow(
        f"SELECT {_COLS} FROM feedback WHERE event_id = $1 AND user_id = $2 AND session_id IS NULL", event_id, user_id)


async def session_summaries(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID) -> list[asyncpg.Record]:
    """Per session of the event (also those without feedback): count, average, distribution 1..5."""
    return await conn.fetch(
        """SELECT s.id AS session_id, s.title, s.starts_at, s.status,
                  count(f.id) AS count, round(avg(f.rating)::numeric, 2)::float8 AS average,
                  array[count(*) FILTER (WHERE f.rating = 1), count(*) FILTER (WHERE f.rating = 2),
                        count(*) FILTER (WHERE f.rating = 3), count(*) FILTER (WHERE f.rating = 4),
                        count(*) FILTER (WHERE f.rating = 5)] AS distribution,
                  count(f.comment) AS comments
             FROM sessions s LEFT JOIN feedback f ON f.session_id = s.id
            WHERE s.event_id = $1
            GROUP BY s.id ORDER BY s.starts_at, s.id""",
        event_id,
    )


async def event_summary(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID) -> asyncpg.Record:
    return await conn.fetchrow(
        """SELECT count(*) AS count, round(avg(rating)::numeric, 2)::float8 AS average,
                  array[count(*) FILTER (WHERE rating = 1), count(*) FILTER (WHERE rating = 2),
                        count(*) FILTER (WHERE rating = 3), count(*) FILTER (WHERE rating = 4),
                        count(*) FILTER (WHERE rating = 5)] AS distribution,
                  count(comment) AS comments
             FROM feedback WHERE event_id = $1 AND session_id IS NULL""",
        event_id,
    )


async def speaker_summaries(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID) -> list[asyncpg.Record]:
    """Per speaker: ratings of every session they speak in."""
    return await conn.fetch(
        """SELECT sp.id AS speaker_id, sp.name, count(DISTINCT ss.session_id) AS sessions,
                  count(f.id) AS count, round(avg(f.rating)::numeric, 2)::float8 AS average
             FROM speakers sp
             JOIN session_speakers ss ON ss.speaker_id = sp.id
             LEFT JOIN feedback f ON f.session_id = ss.session_id
            WHERE sp.event_id = $1
            GROUP BY sp.id ORDER BY sp.name, sp.id""",
        event_id,
    )


async def comments(conn: asyncpg.Connection | asyncpg.Pool, *, event_id: uuid.UUID, session_id: uuid.UUID | None,
                   event_level: bool, before: tuple[datetime, uuid.UUID] | None, limit: int) -> list[asyncpg.Record]:
    """Comments, newest first, keyset-paginated by (updated_at, id). No author identity."""
    conditions = ["f.event_id = $1", "f.comment IS NOT NULL"]
    args: list = [event_id]
    if session_id is not None:
        args.append(session_id)
        conditions.append(f"f.session_id = ${len(args)}")
    elif event_level:
        conditions.append("f.session_id IS NULL")
    if before is not None:
        args.extend(before)
        conditions.append(f"(f.updated_at, f.id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    return await conn.fetch(
        f"""SELECT f.id, f.session_id, s.title AS session_title, f.rating, f.comment, f.updated_at
              FROM feedback f LEFT JOIN sessions s ON s.id = f.session_id
             WHERE {' AND '.join(conditions)}
             ORDER BY f.updated_at DESC, f.id DESC LIMIT ${len(args)}""",
        *args,
    )


async def session_speaker_ids(conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch("SELECT speaker_id FROM session_speakers WHERE session_id = $1 ORDER BY position",
                            session_id)
    return [r["speaker_id"] for r in rows]
