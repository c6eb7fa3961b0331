"""The waiting room's line in Redis and its configuration in PostgreSQL (migration 0180).

Redis keys per ticket type T (all through `Keyspace`):
- `q:line:T`  sorted set: account id -> join time (µs, Redis clock); arrival order = score order
  (ties: account id). One member per account: one place per account.
- `q:adm:T`   hash: account id -> grant expiry (ms) of admitted accounts.
- `q:tick:T`  hash: `last` (ms) and `credit` (admissions owed) of the admitter.
- `q:cfg:T`   hash: `rate` (per minute), `grant_ms`: read by the admitter script.
- `q:ip:T:<ip>` counter of places taken from one client IP (with a TTL).
- `q:active`  set of ticket types whose queue is on (the admitter's work list).

Guarantees:
- `join` and `status` are one Lua script each (atomic): a second join of an account returns its
  existing place; a join over the per-IP cap is refused without taking a place.
- `tick` admits `floor(credit)` accounts in score order, where credit grows with the time since
  the LAST tick of ANY node at `rate` per minute (capped at one second's worth, so an idle queue
  does not save up a burst). Each tick is one script, so any number of nodes ticking together
  admit at the configured global rate.
- `status` of a token whose account is no longer in Redis (Redis lost, flushed) puts it back at
  its original join time (from the signed token): the line rebuilds itself from its members.
"""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis

from storage.redis import Keyspace

KEY_TTL_MS = 2 * 86_400_000  # a line is forgotten two days after its last join

# KEYS: line, adm, ipkey   ARGV: user, max_per_ip, key ttl ms
_JOIN = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local adm = redis.call('HGET', KEYS[2], ARGV[1])
if adm then
  if tonumber(adm) > now_ms then return {'admitted', adm, '-1'} end
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score then return {'waiting', score, tostring(redis.call('ZRANK', KEYS[1], ARGV[1]))} end
local cap = tonumber(ARGV[2])
if cap > 0 then
  local n = redis.call('INCR', KEYS[3])
  if n == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
  if n > cap then redis.call('DECR', KEYS[3]); return {'ip_limited', '0', '-1'} end
end
local joined = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('ZADD', KEYS[1], joined, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {'waiting', joined, tostring(redis.call('ZRANK', KEYS[1], ARGV[1]))}
"""

# KEYS: line, adm   ARGV: user, joined (µs, from the token), key ttl ms
_STATUS = """
local adm = redis.call('HGET', KEYS[2], ARGV[1])
if adm then return {'admitted', adm, '-1'} end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  score = ARGV[2]
end
return {'waiting', score, tostring(redis.call('ZRANK', KEYS[1], ARGV[1]))}
"""

# KEYS: line, adm, tick, cfg   ARGV: max per tick
_TICK = """
local rate = tonumber(redis.call('HGET', KEYS[4], 'rate') or '0')
local grant_ms = tonumber(redis.call('HGET', KEYS[4], 'grant_ms') or '0')
if rate <= 0 or grant_ms <= 0 then return {} end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[3], 'last') or now_ms)
local credit = tonumber(redis.call('HGET', KEYS[3], 'credit') or '0')
if now_ms > last then credit = credit + (now_ms - last) * rate / 60000 end
local cap = math.max(1, rate / 60)
if credit > cap then credit = cap end
local n = math.floor(credit)
local waiting = redis.call('ZCARD', KEYS[1])
if n > waiting then n = waiting end
if n > tonumber(ARGV[1]) then n = tonumber(ARGV[1]) end
local expires = tostring(now_ms + grant_ms)
local admitted = {expires}
if n > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], n)
  for i = 1, #popped, 2 do
    redis.call('HSET', KEYS[2], popped[i], expires)
    admitted[#admitted + 1] = popped[i]
  end
  credit = credit - n
end
redis.call('HSET', KEYS[3], 'last', tostring(now_ms), 'credit', tostring(credit))
redis.call('PEXPIRE', KEYS[3], 86400000)
return admitted
"""


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class QueueStore:
    def __init__(self, redis: aioredis.Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self._join = redis.register_script(_JOIN)
        self._status = redis.register_script(_STATUS)
        self._tick = redis.register_script(_TICK)

    def _k(self, kind: str, type_id: uuid.UUID) -> str:
        return self.keys("q", kind, type_id)

    async def join(self, type_id: uuid.UUID, user_id: uuid.UUID, *, ip: str, max_per_ip: int,
                   ip_window_ms: int = KEY_TTL_MS) -> tuple[str, int, int]:
        """(state, value, rank): ('waiting', joined µs, rank) | ('admitted', grant expiry ms, -1) |
        ('ip_limited', 0, -1)."""
        reply = await self._join(keys=[self._k("line", type_id), self._k("adm", type_id),
                                       self.keys("q", "ip", type_id, ip)],
                                 args=[str(user_id), max_per_ip, ip_window_ms])
        return _text(reply[0]), int(float(_text(reply[1]))), int(_text(reply[2]))

    async def status(self, type_id: uuid.UUID, user_id: uuid.UUID, joined_us: int) -> tuple[str, int, int]:
        reply = await self._status(keys=[self._k("line", type_id), self._k("adm", type_id)],
                                   args=[str(user_id), joined_us, KEY_TTL_MS])
        return _text(reply[0]), int(float(_text(reply[1]))), int(_text(reply[2]))

    async def tick(self, type_id: uuid.UUID, max_per_tick: int = 10_000) -> tuple[list[uuid.UUID], int]:
        """(accounts admitted now, in arrival order; their grant expiry in ms)."""
        reply = await self._tick(keys=[self._k("line", type_id), self._k("adm", type_id), self._k("tick", type_id),
                                       self._k("cfg", type_id)], args=[max_per_tick])
        if not reply:
            return [], 0
        return [uuid.UUID(_text(m)) for m in reply[1:]], int(_text(reply[0]))

    async def head(self, type_id: uuid.UUID, n: int) -> list[uuid.UUID]:
        """The first `n` waiting accounts, in arrival order (position = index + 1)."""
        return [uuid.UUID(_text(m)) for m in await self.redis.zrange(self._k("line", type_id), 0, n - 1)]

    async def configure(self, type_id: uuid.UUID, *, enabled: bool, rate: int, grant_ms: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._k("cfg", type_id), mapping={"rate": rate, "grant_ms": grant_ms})
        if enabled:
            pipe.sadd(self.keys("q", "active"), str(type_id))
        else:
            pipe.srem(self.keys("q", "active"), str(type_id))
        await pipe.execute()

    async def active(self) -> list[uuid.UUID]:
        return [uuid.UUID(_text(m)) for m in await self.redis.smembers(self.keys("q", "active"))]

    async def waiting(self, type_id: uuid.UUID) -> tuple[int, int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self._k("line", type_id))
        pipe.hlen(self._k("adm", type_id))
        waiting, admitted = await pipe.execute()
        return int(waiting), int(admitted)


# --- configuration in PostgreSQL --------------------------------------------------------------------

CONFIG_COLUMNS = "ticket_type_id, event_id, enabled, admit_per_minute, grant_seconds, max_per_ip, updated_at"


async def put_config(conn: Any, *, event_id: uuid.UUID, type_id: uuid.UUID, enabled: bool, admit_per_minute: int,
                     grant_seconds: int, max_per_ip: int) -> Any:
    return await conn.fetchrow(
        f"""INSERT INTO queue_configs (ticket_type_id, event_id, enabled, admit_per_minute, grant_seconds, max_per_ip)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (ticket_type_id) DO UPDATE SET enabled = EXCLUDED.enabled,
                admit_per_minute = EXCLUDED.admit_per_minute, grant_seconds = EXCLUDED.grant_seconds,
                max_per_ip = EXCLUDED.max_per_ip, updated_at = now()
            RETURNING {CONFIG_COLUMNS}""", type_id, event_id, enabled, admit_per_minute, grant_seconds, max_per_ip)


async def get_config(conn: Any, type_id: uuid.UUID) -> Any:
    return await conn.fetchrow(f"SELECT {CONFIG_COLUMNS} FROM queue_configs WHERE ticket_type_id = $1", type_id)


async def configs_of_event(conn: Any, event_id: uuid.UUID) -> list[Any]:
    return await conn.fetch(f"SELECT {CONFIG_COLUMNS} FROM queue_configs WHERE event_id = $1 AND enabled", event_id)


async def enabled_configs(conn: Any) -> list[Any]:
    return await conn.fetch(f"SELECT {CONFIG_COLUMNS} FROM queue_configs WHERE enabled")


async def type_exists(conn: Any, event_id: uuid.UUID, type_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM ticket_types WHERE event_id = $1 AND id = $2", event_id, type_id))
