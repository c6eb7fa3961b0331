"""Room event log (PostgreSQL) and replay streams (Redis) for live rooms.

PostgreSQL side — guarantees:
- `append_event` must run inside the transaction that makes the event true, as its LAST
  statement before commit (it takes the room's counter row lock, held until commit). Seqs are
  per room, start at 1, gapless (rollback returns the number) and committed in seq order: when
  seq N+1 is committed, N is committed too. That is why a node that misses N can always fetch it
  from `room_events`.
- `dedupe_key` makes at-least-once producers idempotent: a second append with the same key
  returns the first event's seq and writes nothing, also when both run concurrently (an advisory
  lock per key; the caller's transaction must be READ COMMITTED).

Redis side (`StreamStore`) — the replay stream of a room is a bounded cache of `room_events`:
- `append` is one Lua script that keeps the stream contiguous and in seq order even when
  nodes commit concurrently: event N+1 arriving before N waits in a pending hash, and when N
  arrives both are appended and PUBLISHed to the room channel, in order. So subscribers see
  seq order, and the stream never has holes. A stream that is missing (new room, expired, or
  Redis lost it) starts a new *epoch* at the first seq appended; older positions then resync.
- `read(room, after)` returns the stream's meta `{epoch, first, last}` and the entries after a
  position, in one round trip.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from storage.redis import Keyspace

# ------------------------------------------------------------------------------------------------
# PostgreSQL
# ------------------------------------------------------------------------------------------------

_APPEND_SQL = """
    WITH s AS (UPDATE live_rooms SET seq = seq + 1 WHERE room = $1 RETURNING seq),
         e AS (INSERT INTO room_events (room, seq, event, data, actor_id, dedupe_key)
               SELECT $1, s.seq, $2, $3, $4, $5 FROM s RETURNING seq),
         m AS (UPDATE chat_messages SET seq = (SELECT seq FROM e) WHERE $6::uuid IS NOT NULL AND id = $6
               RETURNING 1)
    SELECT seq FROM e"""


async def append_event(
    conn: asyncpg.Connection,
    *,
    room: str,
    event_id: uuid.UUID | None,
    event: str,
    data: dict[str, Any],
    actor_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
    message_id: uuid.UUID | None = None,
) -> tuple[int, bool]:
    """Assign the next seq of `room` and record the event; returns (seq, created).

    Creates the room row on first use. `created` is False when `dedupe_key` was seen before
    (the returned seq is then the first event's). `message_id`: a chat message written earlier
    in this transaction whose `seq` is set to this event's, in the same statement (the counter
    lock is held for one statement plus the commit).
    """
    if not conn.is_in_transaction():
        raise RuntimeError("append_event must run inside the transaction that makes the event true")
    if dedupe_key is not None:
        # concurrent producers of the same key queue here until the first commits, then see its row
        # (checking without the lock would let both pass and the second fail on the unique index)
        # (two statements: the check needs a snapshot taken after the lock is granted)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1 || ' ' || $2, 7))", room, dedupe_key)
        seen = await conn.fetchval(
            "SELECT seq FROM room_events WHERE room = $1 AND dedupe_key = $2", room, dedupe_key
        )
        if seen is not None:
            return seen, False
    # A plain UPDATE takes a FOR NO KEY UPDATE row lock, which does not conflict with the FOR KEY
    # SHARE locks that foreign keys to live_rooms take (chat_messages, room_events inserted by
    # concurrent transactions). INSERT ... ON CONFLICT DO UPDATE would take FOR UPDATE and make
    # every concurrent writer of the room wait for every other one's commit.
    seq = await conn.fetchval(_APPEND_SQL, room, event, data, actor_id, dedupe_key, message_id)
    if seq is None:
        await ensure_room(conn, room, event_id)
        seq = await conn.fetchval(_APPEND_SQL, room, event, data, actor_id, dedupe_key, message_id)
    return seq, True


_APPEND_MANY_SQL = """
    WITH s AS (UPDATE live_rooms SET seq = seq + $2 WHERE room = $1 RETURNING seq - $2 AS base),
         ev AS (SELECT s.base + x.n AS seq, x.event, x.data, x.actor_id, x.message_id
                  FROM s, unnest($3::text[], $4::text[], $5::uuid[], $6::uuid[]) WITH ORDINALITY
                       AS x(event, data, actor_id, message_id, n)),
         e AS (INSERT INTO room_events (room, seq, event, data, actor_id)
               SELECT $1, ev.seq, ev.event, ev.data::jsonb, ev.actor_id FROM ev RETURNING seq),
         m AS (UPDATE chat_messages c SET seq = ev.seq FROM ev
                WHERE ev.message_id IS NOT NULL AND c.id = ev.message_id RETURNING 1)
    SELECT min(seq) FROM e"""


async def append_events(
    conn: asyncpg.Connection,
    *,
    room: str,
    event_id: uuid.UUID | None,
    events: list[tuple[str, str, uuid.UUID | None, uuid.UUID | None]],
) -> int:
    """Group commit: assign consecutive seqs to several events of one room in one statement
    (the counter lock is taken once per batch). `events` = (event, data JSON text, actor_id,
    chat message id or None). Returns the first seq; the i-th event has first + i."""
    if not conn.is_in_transaction():
        raise RuntimeError("append_events must run inside the transaction that makes the events true")
    cols = ([e[0] for e in events], [e[1] for e in events], [e[2] for e in events], [e[3] for e in events])
    first = await conn.fetchval(_APPEND_MANY_SQL, room, len(events), *cols)
    if first is None:
        await ensure_room(conn, room, event_id)
        first = await conn.fetchval(_APPEND_MANY_SQL, room, len(events), *cols)
    return first


async def ensure_room(conn: asyncpg.Connection | asyncpg.Pool, room: str, event_id: uuid.UUID | None) -> None:
    await conn.execute(
        "INSERT INTO live_rooms (room, event_id) VALUES ($1, $2) ON CONFLICT (room) DO NOTHING", room, event_id
    )


@dataclass(frozen=True, slots=True)
class RoomRow:
    room: str
    event_id: uuid.UUID | None
    seq: int
    slow_mode_seconds: int


async def get_room(conn: Any, room: str) -> RoomRow | None:
    row = await conn.fetchrow(
        "SELECT room, event_id, seq, slow_mode_seconds FROM live_rooms WHERE room = $1", room
    )
    return RoomRow(**dict(row)) if row else None


async def room_seq(conn: Any, room: str) -> int:
    return await conn.fetchval("SELECT seq FROM live_rooms WHERE room = $1", room) or 0


async def set_slow_mode(conn: asyncpg.Connection, room: str, seconds: int) -> None:
    await conn.execute("UPDATE live_rooms SET slow_mode_seconds = $2 WHERE room = $1", room, seconds)


async def load_events(conn: Any, room: str, *, after: int, before: int | None = None,
                      limit: int = 1000) -> list[tuple[int, str, dict[str, Any]]]:
    """Durable events with after < seq < before (or all after `after`), in seq order."""
    rows = await conn.fetch(
        """SELECT seq, event, data FROM room_events
            WHERE room = $1 AND seq > $2 AND ($3::bigint IS NULL OR seq < $3)
            ORDER BY seq LIMIT $4""",
        room, after, before, limit,
    )
    return [(r["seq"], r["event"], r["data"]) for r in rows]


async def session_event_id(conn: Any, session_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval("SELECT event_id FROM sessions WHERE id = $1", session_id)


async def user_name(conn: Any, user_id: uuid.UUID) -> str | None:
    return await conn.fetchval("SELECT name FROM users WHERE id = $1 AND disabled_at IS NULL", user_id)


# ------------------------------------------------------------------------------------------------
# Redis replay streams
# ------------------------------------------------------------------------------------------------

# KEYS: stream, meta, pending.  ARGV: seq, body, maxlen, channel, ttl, new_epoch
# Returns {status, last}: 1 appended (and everything pending after it), 0 duplicate, 2 waiting.
_APPEND = """
local seq = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[2], 'last'))
if not last then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('HSET', KEYS[2], 'epoch', ARGV[6], 'first', seq, 'last', seq - 1)
  last = seq - 1
end
local ttl = tonumber(ARGV[5])
if seq <= last then return {0, last} end
if seq > last + 1 then
  redis.call('HSET', KEYS[3], seq, ARGV[2])
  redis.call('EXPIRE', KEYS[3], ttl)
  return {2, last}
end
local body = ARGV[2]
while body do
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], seq .. '-0', 'b', body)
  redis.call('PUBLISH', ARGV[4], seq .. '\\n' .. body)
  last = seq
  seq = seq + 1
  body = redis.call('HGET', KEYS[3], seq)
  if body then redis.call('HDEL', KEYS[3], seq) end
end
redis.call('HSET', KEYS[2], 'last', last)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return {1, last}
"""

APPENDED, DUPLICATE, WAITING = 1, 0, 2


@dataclass(frozen=True, slots=True)
class StreamMeta:
    epoch: str
    first: int
    last: int


def encode_body(event: str, data_json: bytes) -> bytes:
    """A stream entry / pub-sub body: `event \\n data-json` (data without room and seq)."""
    return event.encode() + b"\n" + data_json


def decode_body(body: bytes) -> tuple[bytes, bytes]:
    event, _, data = body.partition(b"\n")
    return event, data


class StreamStore:
    """Replay streams and room channels of live rooms (keys under `live:`)."""

    def __init__(self, redis: aioredis.Redis, keys: Keyspace, *, maxlen: int, ttl_seconds: int) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen
        self.ttl = ttl_seconds
        self._append: AsyncScript = redis.register_script(_APPEND)

    def channel(self, room: str) -> str:
        return self.keys("live", "c", room)

    def stream_key(self, room: str) -> str:
        return self.keys("live", "s", room)

    def meta_key(self, room: str) -> str:
        return self.keys("live", "m", room)

    async def append(self, room: str, seq: int, body: bytes) -> tuple[int, int]:
        """Append (and publish) event `seq`; returns (APPENDED | DUPLICATE | WAITING, stream last)."""
        status, last = await self._append(
            keys=[self.stream_key(room), self.meta_key(room), self.keys("live", "p", room)],
            args=[seq, body, self.maxlen, self.channel(room), self.ttl, secrets.token_hex(6)],
        )
        return int(status), int(last)

    async def meta(self, room: str) -> StreamMeta | None:
        epoch, first, last = await self.redis.hmget(self.meta_key(room), "epoch", "first", "last")
        if epoch is None or last is None:
            return None
        return StreamMeta(epoch.decode(), int(first or 0), int(last))

    async def read(self, room: str, *, after: int, count: int) -> tuple[StreamMeta | None, list[tuple[int, bytes]]]:
        """Meta and up to `count` entries with seq > after, atomically."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self.meta_key(room), "epoch", "first", "last")
            pipe.xrange(self.stream_key(room), min=f"{after + 1}-0", max="+", count=count)
            (epoch, first, last), entries = await pipe.execute()
        meta = None if epoch is None or last is None else StreamMeta(epoch.decode(), int(first or 0), int(last))
        return meta, [(int(eid.split(b"-", 1)[0]), fields[b"b"]) for eid, fields in entries]

    async def range(self, room: str, *, after: int, before: int) -> list[tuple[int, bytes]]:
        """Entries with after < seq < before (may be incomplete if trimmed or lost)."""
        if before - after <= 1:
            return []
        entries = await self.redis.xrange(self.stream_key(room), min=f"{after + 1}-0", max=f"{before - 1}-0")
        return [(int(eid.split(b"-", 1)[0]), fields[b"b"]) for eid, fields in entries]
