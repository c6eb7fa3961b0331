"""PostgreSQL side of the outbox relay: stream cursors and leases, batches, deliveries, dead letters.

Guarantees (see server/relay.py for the loop that uses them, docs/events.md for the contract):
- A stream (one in-process consumer, or `kafka`) is worked on by one node at a time: the node
  holding an unexpired lease (`claim`); every progress write is fenced by `owner = node`, so a
  node that lost its lease cannot move the cursor.
- `fetch_batch` returns rows in (txid, seq) order, only from finished transactions (txid below
  the oldest transaction still running in this database), so rows that commit out of sequence
  order are never skipped. It also
  returns the "tail": the last finished row of any type, so a type-filtered stream can move its
  cursor past rows it does not want once it has caught up.
- `advance` records the (consumer, event id) pairs and moves the cursor in one statement.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from storage.outbox import OutboxEvent

Conn = asyncpg.Connection | asyncpg.Pool

# The read horizon: the oldest transaction still running in THIS database when the statement's
# snapshot was taken (else the snapshot's xmax). Rows of transactions below it are final.
# pg_snapshot_xmin alone would be the oldest running transaction of the whole cluster, so a slow
# transaction in another database (a DROP DATABASE, a batch job) would delay delivery here.
# An in-progress xid is skipped only when pg_stat_activity proves it belongs to another database;
# one it cannot place (finished meanwhile, or not visible to this role) counts as ours: safe.
_HORIZON_CTE = """s AS MATERIALIZED (SELECT pg_current_snapshot() AS snap),
    foreign_xids AS MATERIALIZED (
        SELECT backend_xid::text::bigint AS x FROM pg_stat_activity
         WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()),
    h AS MATERIALIZED (
        SELECT coalesce(
            (SELECT min(x::text::bigint) FROM s, pg_snapshot_xip(s.snap) AS x
              WHERE (x::text::bigint % 4294967296) NOT IN (SELECT f.x FROM foreign_xids f)),
            (SELECT pg_snapshot_xmax(s.snap)::text::bigint FROM s)) AS x)"""


@dataclass(frozen=True, slots=True)
class Position:
    txid: int
    seq: int

    def __lt__(self, other: Position) -> bool:
        return (self.txid, self.seq) < (other.txid, other.seq)


@dataclass(frozen=True, slots=True)
class StreamState:
    name: str
    position: Position
    owner: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Batch:
    events: list[tuple[Position, OutboxEvent]]
    tail: Position | None  # last finished row of any type (None: the outbox is empty)


async def register_streams(conn: Conn, names: list[str]) -> None:
    """Create missing stream rows (new streams start at the oldest retained row) and mark all seen."""
    await conn.execute(
        """INSERT INTO relay_streams (name) SELECT unnest($1::text[])
           ON CONFLICT (name) DO UPDATE SET seen_at = now()""",
        names,
    )


async def claim(conn: Conn, name: str, node: str, lease_seconds: float) -> StreamState | None:
    """Take or renew the lease on `name` for `node`; None while another node holds it."""
    row = await conn.fetchrow(
        """UPDATE relay_streams
              SET owner = $2, lease_until = now() + make_interval(secs => $3), seen_at = now()
            WHERE name = $1 AND (owner IS NULL OR owner = $2 OR lease_until < now())
        RETURNING name, last_txid, last_seq, owner, attempts""",
        name, node, lease_seconds,
    )
    if row is None:
        return None
    return StreamState(row["name"], Position(row["last_txid"], row["last_seq"]), row["owner"], row["attempts"])


async def release(conn: Conn, name: str, node: str) -> None:
    await conn.execute(
        "UPDATE relay_streams SET owner = NULL, lease_until = NULL WHERE name = $1 AND owner = $2", name, node
    )


async def fetch_batch(
    conn: Conn, after: Position, *, types: list[str] | None, limit: int
) -> Batch:
    """Up to `limit` rows after `after` (optionally only `types`), in (txid, seq) order, plus the tail."""
    rows = await conn.fetch(
        f"""WITH {_HORIZON_CTE},
                 tail AS (SELECT o.txid, o.seq FROM outbox o, h WHERE o.txid < h.x
                           ORDER BY o.txid DESC, o.seq DESC LIMIT 1)
            SELECT tail.txid AS tail_txid, tail.seq AS tail_seq, b.*
              FROM tail LEFT JOIN LATERAL (
                   SELECT o.seq, o.id, o.type, o.version, o.event_id, o.key, o.data, o.occurred_at, o.txid
                     FROM outbox o, h
                    WHERE (o.txid, o.seq) > ($1, $2) AND o.txid < h.x
                      AND ($3::text[] IS NULL OR o.type = ANY($3::text[]))
                    ORDER BY o.txid, o.seq
                    LIMIT $4) b ON true""",
        after.txid, after.seq, types, limit,
    )
    if not rows:
        return Batch([], None)
    tail = Position(rows[0]["tail_txid"], rows[0]["tail_seq"])
    events = [(Position(r["txid"], r["seq"]), OutboxEvent.from_row(r)) for r in rows if r["seq"] is not None]
    return Batch(events, tail)


async def delivered_ids(conn: Conn, consumer: str, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `ids` were already recorded as delivered to `consumer`."""
    if not ids:
        return set()
    rows = await conn.fetch(
        "SELECT event_id FROM relay_deliveries WHERE consumer = $1 AND event_id = ANY($2::uuid[])", consumer, ids
    )
    return {r["event_id"] for r in rows}


async def advance(
    conn: Conn, name: str, node: str, to: Position, *, delivered: list[uuid.UUID], record: bool,
    lease_seconds: float, count: int | None = None,
) -> bool:
    """Record `delivered` pairs (when `record`) and move the cursor to `to`, fenced by the lease.

    `count` (default: len(delivered)) is added to the stream's all-time delivered counter.

    Returns False when `node` no longer holds the lease (nothing is written then).
    """
    status = await conn.fetchval(
        """WITH s AS (
               UPDATE relay_streams
                  SET last_txid = $3, last_seq = $4, attempts = 0, last_error = NULL,
                      delivered = delivered + $8,
                      lease_until = now() + make_interval(secs => $7), updated_at = now()
                WHERE name = $1 AND owner = $2 AND (last_txid, last_seq) <= ($3, $4)
               RETURNING 1),
           d AS (
               INSERT INTO relay_deliveries (consumer, event_id)
               SELECT $1, unnest($5::uuid[]) WHERE $6 AND EXISTS (SELECT 1 FROM s)
               ON CONFLICT DO NOTHING)
           SELECT count(*) FROM s""",
        name, node, to.txid, to.seq, delivered, record, lease_seconds,
        len(delivered) if count is None else count,
    )
    return bool(status)


async def record_failure(conn: Conn, name: str, node: str, error: str) -> int:
    """Count one more failed attempt at the stream's next event; returns the attempts so far."""
    value = await conn.fetchval(
        """UPDATE relay_streams SET attempts = attempts + 1, last_error = $3, updated_at = now()
            WHERE name = $1 AND owner = $2 RETURNING attempts""",
        name, node, error[:2000],
    )
    return int(value or 0)


async def dead_letter(
    conn: asyncpg.Connection, name: str, node: str, pos: Position, event: OutboxEvent, *, attempts: int,
    error: str, lease_seconds: float,
) -> bool:
    """Park `event` for `name` in the dead-letter table and move the cursor past it (one transaction)."""
    async with conn.transaction():
        moved = await advance(conn, name, node, pos, delivered=[], record=False, lease_seconds=lease_seconds)
        if not moved:
            return False
        await conn.execute(
            """INSERT INTO relay_dead_letters (consumer, event_id, seq, type, attempts, error, envelope)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (consumer, event_id) DO UPDATE
                  SET attempts = EXCLUDED.attempts, error = EXCLUDED.error, created_at = now(), retried_at = NULL""",
            name, event.id, event.seq, event.type, attempts, error[:2000], event.envelope(),
        )
    return True


async def claim_once(conn: asyncpg.Connection, consumer: str, event_id: uuid.UUID) -> bool:
    """Inside a consumer's own transaction: True the first time (consumer, event id) is seen.

    A consumer that writes to PostgreSQL calls this in the same transaction as its writes, so a
    redelivered event changes nothing (exactly-once effect), even after a crash between its
    commit and the relay's bookkeeping.
    """
    row = await conn.fetchval(
        """INSERT INTO relay_deliveries (consumer, event_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""",
        consumer, event_id,
    )
    return bool(row)


# --- sweeping: published marks, retention -------------------------------------------------------

async def mark_published(conn: Conn, streams: list[str], *, active_within_seconds: float) -> int:
    """Set `published_at` on rows every active stream has passed. Returns the number marked.

    A stream counts as active when a node running it was seen recently; a consumer removed from
    the code stops holding back the marks (and retention) after that window.
    """
    status = await conn.execute(
        """WITH m AS (
               SELECT last_txid, last_seq FROM relay_streams
                WHERE name = ANY($1::text[]) OR seen_at > now() - make_interval(secs => $2)
                ORDER BY last_txid, last_seq LIMIT 1)
           UPDATE outbox o SET published_at = now()
             FROM m
            WHERE o.published_at IS NULL AND (o.txid, o.seq) <= (m.last_txid, m.last_seq)""",
        streams, active_within_seconds,
    )
    return int(status.split()[-1])


async def prune(conn: Conn, *, older_than_seconds: float, limit: int = 10_000) -> int:
    """Delete published outbox rows and delivery records older than the retention window."""
    status = await conn.execute(
        """DELETE FROM outbox WHERE seq IN (
               SELECT seq FROM outbox WHERE published_at < now() - make_interval(secs => $1) LIMIT $2)""",
        older_than_seconds, limit,
    )
    deleted = int(status.split()[-1])
    await conn.execute(
        """DELETE FROM relay_deliveries WHERE ctid IN (
               SELECT ctid FROM relay_deliveries WHERE delivered_at < now() - make_interval(secs => $1) LIMIT $2)""",
        older_than_seconds, limit,
    )
    return deleted


# --- observation ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OutboxLag:
    pending: int  # rows not yet delivered to every stream
    oldest_pending_seconds: float  # age of the oldest such row (0 when none)
    newest_seq: int


async def outbox_lag(conn: Conn) -> OutboxLag:
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS pending,
                  (SELECT extract(epoch FROM now() - min(occurred_at)) FROM outbox
                    WHERE published_at IS NULL) AS oldest,
                  (SELECT coalesce(max(seq), 0) FROM outbox) AS newest"""
    )
    return OutboxLag(int(row["pending"]), float(row["oldest"] or 0.0), int(row["newest"]))


async def stream_names(conn: Conn) -> list[str]:
    return [r["name"] for r in await conn.fetch("SELECT name FROM relay_streams ORDER BY name")]


async def stream_lags(conn: Conn, names: list[str]) -> list[dict[str, Any]]:
    """Per stream: cursor, owner, attempts, and events behind (all types; an upper bound for filtered ones)."""
    rows = await conn.fetch(
        """SELECT s.name, s.last_seq, s.owner, s.lease_until, s.attempts, s.last_error, s.delivered,
                  (SELECT count(*) FROM outbox o WHERE (o.txid, o.seq) > (s.last_txid, s.last_seq)) AS behind
             FROM relay_streams s WHERE s.name = ANY($1::text[]) ORDER BY s.name""",
        names,
    )
    return [dict(r) for r in rows]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    consumer: str
    event_id: uuid.UUID
    seq: int
    type: str
    attempts: int
    error: str
    created_at: datetime
    retried_at: datetime | None


async def list_dead_letters(conn: Conn, *, limit: int = 100, consumer: str | None = None) -> list[DeadLetter]:
    rows = await conn.fetch(
        """SELECT consumer, event_id, seq, type, attempts, error, created_at, retried_at
             FROM relay_dead_letters WHERE ($1::text IS NULL OR consumer = $1)
            ORDER BY created_at DESC LIMIT $2""",
        consumer, limit,
    )
    return [DeadLetter(**dict(r)) for r in rows]


async def dead_letter_envelope(conn: Conn, consumer: str, event_id: uuid.UUID) -> dict[str, Any] | None:
    return await conn.fetchval(
        "SELECT envelope FROM relay_dead_letters WHERE consumer = $1 AND event_id = $2", consumer, event_id
    )


async def mark_dead_letter_retried(conn: Conn, consumer: str, event_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE relay_dead_letters SET retried_at = now() WHERE consumer = $1 AND event_id = $2", consumer, event_id
    )
