"""Polls in PostgreSQL: definitions, one vote per user per poll, sharded result counters,
quiz scores and the leaderboard.

Every function takes the caller's connection; writes belong inside the caller's named
transaction (rooms/polls.py).

Guarantees:
- one vote per user per poll: the primary key of `poll_votes` (a concurrent second insert
  waits for the first to commit, then finds it); a change replaces the row and moves the
  counters in the same transaction, so the results never double count;
- counters are exact at every commit (`results` sums them) and durable: they are the results
  after a restart; the voter's shard is fixed (hash of the user id), so a change decrements
  and increments the same shard;
- `get_poll(lock="share")` is taken by every vote and conflicts with the close's row update:
  a vote either commits before the poll closes (and is in the final results) or sees it closed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

SHARDS = 8
VOTERS = ""  # the counter key that counts voters

_COLUMNS = """id, event_id, session_id, room, kind, question, options, correct, max_choices, scale_min,
              scale_max, allow_change, results, points, state, created_by, created_at, opened_at, closed_at"""


@dataclass(frozen=True, slots=True)
class Poll:
    id: uuid.UUID
    event_id: uuid.UUID
    session_id: uuid.UUID | None
    room: str
    kind: str
    question: str
    options: list[dict[str, str]]
    correct: list[str] | None
    max_choices: int | None
    scale_min: int | None
    scale_max: int | None
    allow_change: bool
    results: str
    points: int
    state: str
    created_by: uuid.UUID | None
    created_at: datetime
    opened_at: datetime | None
    closed_at: datetime | None


EDITABLE = ("kind", "question", "options", "correct", "max_choices", "scale_min", "scale_max", "allow_change",
            "results", "points", "session_id", "room")


def _poll(row: Any) -> Poll:
    return Poll(**dict(row))


def shard_of(user_id: uuid.UUID) -> int:
    return user_id.int % SHARDS


async def insert_poll(conn: asyncpg.Connection, *, event_id: uuid.UUID, created_by: uuid.UUID,
                      **values: Any) -> Poll:
    cols = [k for k in EDITABLE if k in values]
    row = await conn.fetchrow(
        f"""INSERT INTO polls (event_id, created_by, {", ".join(cols)})
            VALUES ($1, $2, {", ".join(f"${i + 3}" for i in range(len(cols)))}) RETURNING {_COLUMNS}""",
        event_id, created_by, *(values[c] for c in cols))
    return _poll(row)


async def replace_poll(conn: asyncpg.Connection, poll_id: uuid.UUID, **values: Any) -> Poll:
    cols = [k for k in EDITABLE if k in values]
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
    row = await conn.fetchrow(
        f"UPDATE polls SET {sets}, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
        poll_id, *(values[c] for c in cols))
    return _poll(row)


async def get_poll(conn: Any, poll_id: uuid.UUID, *, lock: str | None = None) -> Poll | None:
    suffix = {None: "", "share": " FOR SHARE", "update": " FOR UPDATE"}[lock]
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM polls WHERE id = $1{suffix}", poll_id)
    return _poll(row) if row else None


async def delete_poll(conn: asyncpg.Connection, poll_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM polls WHERE id = $1", poll_id)


async def set_state(conn: asyncpg.Connection, poll_id: uuid.UUID, state: str) -> Poll:
    stamp = {"open": "opened_at", "closed": "closed_at"}[state]
    row = await conn.fetchrow(
        f"UPDATE polls SET state = $2, {stamp} = now(), updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
        poll_id, state)
    return _poll(row)


async def list_polls(conn: Any, event_id: uuid.UUID, *, include_drafts: bool, limit: int = 200) -> list[Poll]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM polls WHERE event_id = $1 AND ($2 OR state <> 'draft')
             ORDER BY created_at DESC LIMIT $3""", event_id, include_drafts, limit)
    return [_poll(r) for r in rows]


async def room_polls(conn: Any, room: str, *, limit: int) -> list[Poll]:
    """Open and closed polls shown in a room, newest first."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM polls WHERE room = $1 AND state <> 'draft'
             ORDER BY coalesce(opened_at, created_at) DESC LIMIT $2""", room, limit)
    return [_poll(r) for r in rows]


# --- votes -----------------------------------------------------------------------------------------

async def insert_vote(conn: asyncpg.Connection, poll_id: uuid.UUID, user_id: uuid.UUID, client_id: str,
                      choices: list[str]) -> bool:
    """The user's first vote (True), or False when they already have one (committed or not yet:
    a concurrent insert is waited for)."""
    return bool(await conn.fetchval(
        """INSERT INTO poll_votes (poll_id, user_id, client_id, choices) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING true""", poll_id, user_id, client_id, choices))


async def get_vote(conn: Any, poll_id: uuid.UUID, user_id: uuid.UUID, *,
                   for_update: bool = False) -> tuple[str, list[str]] | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT client_id, choices FROM poll_votes WHERE poll_id = $1 AND user_id = $2{lock}", poll_id, user_id)
    return (row["client_id"], list(row["choices"])) if row else None


async def replace_vote(conn: asyncpg.Connection, poll_id: uuid.UUID, user_id: uuid.UUID, client_id: str,
                       choices: list[str]) -> None:
    await conn.execute(
        """UPDATE poll_votes SET choices = $3, client_id = $4, updated_at = now()
            WHERE poll_id = $1 AND user_id = $2""", poll_id, user_id, choices, client_id)


async def bump(conn: asyncpg.Connection, poll_id: uuid.UUID, shard: int, deltas: dict[str, int]) -> None:
    """Add `deltas` to the counters of one shard, in key order (no deadlock between votes)."""
    keys = sorted(k for k, d in deltas.items() if d)
    if not keys:
        return
    await conn.execute(
        """INSERT INTO poll_counts AS c (poll_id, key, shard, n)
           SELECT $1, k, $2, d FROM unnest($3::text[], $4::int[]) AS t(k, d)
           ON CONFLICT (poll_id, key, shard) DO UPDATE SET n = c.n + excluded.n""",
        poll_id, shard, keys, [deltas[k] for k in keys])


async def results(conn: Any, poll_id: uuid.UUID, *, top: int | None = None) -> tuple[int, dict[str, int]]:
    """(voters, {key: count}) with zero counts left out; `top` keeps the largest (word clouds)."""
    rows = await conn.fetch(
        """SELECT key, sum(n)::int AS n FROM poll_counts WHERE poll_id = $1
            GROUP BY key HAVING sum(n) <> 0 ORDER BY key = '' DESC, sum(n) DESC, key""", poll_id)
    voters = 0
    counts: dict[str, int] = {}
    for r in rows:
        if r["key"] == VOTERS:
            voters = r["n"]
        elif top is None or len(counts) < top:
            counts[r["key"]] = r["n"]
    return voters, counts


async def results_many(conn: Any, poll_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, dict[str, int]]]:
    """`results` of several polls in one query (join snapshots, listings), counts by key."""
    rows = await conn.fetch(
        """SELECT poll_id, key, sum(n)::int AS n FROM poll_counts WHERE poll_id = ANY($1::uuid[])
            GROUP BY poll_id, key HAVING sum(n) <> 0 ORDER BY poll_id, sum(n) DESC, key""", poll_ids)
    out: dict[uuid.UUID, tuple[int, dict[str, int]]] = {p: (0, {}) for p in poll_ids}
    for r in rows:
        voters, counts = out[r["poll_id"]]
        if r["key"] == VOTERS:
            out[r["poll_id"]] = (r["n"], counts)
        else:
            counts[r["key"]] = r["n"]
    return out


async def score_quiz(conn: asyncpg.Connection, poll_id: uuid.UUID, correct: list[str], points: int) -> None:
    await conn.execute(
        """UPDATE poll_votes SET score = CASE WHEN choices = $2::text[] THEN $3 ELSE 0 END
            WHERE poll_id = $1""", poll_id, sorted(correct), points)


async def leaderboard(conn: Any, event_id: uuid.UUID, *, limit: int,
                      user_id: uuid.UUID | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Quiz standings of an event over its closed quizzes: score, then the faster total answer
    time. Returns (top `limit`, the given user's row or None)."""
    rows = await conn.fetch(
        """WITH s AS (
               SELECT v.user_id, sum(v.score)::int AS score, count(*)::int AS answered,
                      sum(extract(epoch FROM v.updated_at - p.opened_at)) AS secs
                 FROM poll_votes v JOIN polls p ON p.id = v.poll_id
                WHERE p.event_id = $1 AND p.kind = 'quiz' AND p.state = 'closed'
                GROUP BY v.user_id),
           r AS (SELECT s.*, rank() OVER (ORDER BY score DESC, secs ASC) AS rank FROM s)
           SELECT r.user_id, u.name, r.score, r.answered, r.rank::int AS rank
             FROM r JOIN users u ON u.id = r.user_id
            WHERE r.rank <= $2 OR r.user_id = $3
            ORDER BY r.rank, u.name""", event_id, limit, user_id)
    top = [dict(r) for r in rows if r["rank"] <= limit][:limit]
    me = next((dict(r) for r in rows if user_id is not None and r["user_id"] == user_id), None)
    return top, me


POLL_FIELDS = tuple(f.name for f in fields(Poll))
