"""Atomic rate limits in Redis, shared by every node and reusable by every area.

Two algorithms, each one Lua script (atomic on the Redis server, one round trip):

**Sliding-window log** (`RateLimiter.acquire`): every counted hit is a member of a sorted set,
scored by the Redis server's clock in milliseconds. A hit is admitted when, after dropping the
members older than the window, fewer than `limit` remain; it is then recorded. Exact (no burst
of 2× at a window edge), uses the Redis clock (nodes' clocks do not matter), and memory is at
most `limit` members per key, so it suits small limits (logins, 2FA codes, sign-ups, order
attempts per user). A recorded hit has a `token`; `release(token)` un-counts it (e.g. a login
attempt that turned out to succeed), and `reset(key)` forgets a key entirely.

**Fixed-window counter** (`RateLimiter.acquire_fixed`): INCR plus an expiry on the first hit.
O(1) memory for any limit, but up to 2× `limit` can pass around a window boundary. Use it for
large, coarse limits (requests per minute per IP).

Guarantees:
- `acquire` checks every given `Limit` and records the hit in all of them, or in none (all or
  nothing in one script), so a refused hit never consumes another limit's budget.
- Concurrent callers on any number of nodes never get more than `limit` admitted hits per
  window per key (each script runs alone on the server).
- A refusal carries `retry_after`: seconds until the refusing limits would admit one more hit
  (the largest across refusing limits).
- Redis being unreachable raises `FoyerError("unavailable")` (fail closed: callers guard
  security-relevant actions with these limits).

Keys are full Redis key names built by the caller with `core.keys(...)`, e.g.
`core.keys("rl", "login", "ip", ip)`. In a Redis Cluster all keys of one `acquire` call would
have to share a hash slot; Foyer uses a single Redis/Valkey (or a primary with replicas).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from domain.errors import FoyerError

# KEYS: the sorted sets. ARGV: member, peek ("1"/"0"), then limit_i..., then window_ms_i...
# Returns {refused_index (0 = admitted), retry_after_ms, remaining}.
_SLIDING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local member = ARGV[1]
local peek = ARGV[2] == '1'
local refused = 0
local retry = 0
local remaining = -1
for i = 1, n do
  local key = KEYS[i]
  local limit = tonumber(ARGV[2 + i])
  local window = tonumber(ARGV[2 + n + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  local left
  if count >= limit then
    -- the (count - limit + 1) oldest hits must age out before one more fits
    local entry = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local wait = tonumber(entry[2]) + window - now
    if wait < 1 then wait = 1 end
    if wait > retry then retry = wait end
    if refused == 0 then refused = i end
    left = 0
  elseif peek then
    left = limit - count
  else
    left = limit - count - 1
  end
  if remaining < 0 or left < remaining then remaining = left end
end
if refused > 0 or peek then
  return {refused, retry, remaining}
end
for i = 1, n do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 + n + i]))
end
return {0, 0, remaining}
"""

# KEYS[1]: counter. ARGV: limit, window_ms. Returns {admitted 1/0, retry_after_ms, remaining}.
_FIXED = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
local limit = tonumber(ARGV[1])
if count > limit then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
    ttl = tonumber(ARGV[2])
  end
  return {0, ttl, 0}
end
return {1, 0, limit - count}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `limit` hits per `window_seconds` on `key` (a full key from `core.keys`)."""

    key: str
    limit: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_seconds <= 0:
            raise ValueError(f"rate limit {self.key!r} needs limit >= 1 and a positive window")

    @property
    def window_ms(self) -> int:
        return max(1, int(self.window_seconds * 1000))


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check. `token` identifies the recorded hit (for `release`)."""

    allowed: bool
    retry_after: float  # seconds; 0 when allowed
    remaining: int  # hits still admitted after this one, smallest across the limits
    token: str
    refused_by: Limit | None = None


class RateLimiter:
    """Sliding-window and fixed-window limits on one Redis client (shared by all nodes)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._sliding = redis.register_script(_SLIDING)
        self._fixed = redis.register_script(_FIXED)

    async def acquire(self, *limits: Limit, token: str | None = None) -> Decision:
        """Admit and record one hit in every limit, or refuse without recording anything."""
        return await self._run_sliding(limits, token or uuid.uuid4().hex, peek=False)

    async def peek(self, *limits: Limit) -> Decision:
        """Would a hit be admitted now? Records nothing (`remaining` counts this hit as not made)."""
        return await self._run_sliding(limits, "", peek=True)

    async def release(self, token: str, *keys: str) -> None:
        """Un-count the hit `token` in the given sliding-window keys (no-op if already gone)."""
        if keys:
            await self._call(self._multi_zrem(token, keys))

    async def reset(self, *keys: str) -> None:
        """Forget every recorded hit of these keys (sliding or fixed)."""
        if keys:
            await self._call(self._redis.delete(*keys))

    async def acquire_fixed(self, limit: Limit) -> Decision:
        """Count one hit in a fixed window starting at the key's first hit."""
        admitted, retry_ms, remaining = await self._call(
            self._fixed(keys=[limit.key], args=[limit.limit, limit.window_ms])
        )
        allowed = bool(int(admitted))
        return Decision(
            allowed=allowed, retry_after=int(retry_ms) / 1000, remaining=int(remaining), token="",
            refused_by=None if allowed else limit,
        )

    # --- internals --------------------------------------------------------------------------

    async def _run_sliding(self, limits: tuple[Limit, ...], token: str, *, peek: bool) -> Decision:
        if not limits:
            raise ValueError("acquire needs at least one Limit")
        args: list[object] = [token, "1" if peek else "0"]
        args += [lim.limit for lim in limits]
        args += [lim.window_ms for lim in limits]
        refused, retry_ms, remaining = await self._call(
            self._sliding(keys=[lim.key for lim in limits], args=args)
        )
        refused = int(refused)
        return Decision(
            allowed=refused == 0,
            retry_after=int(retry_ms) / 1000,
            remaining=max(0, int(remaining)),
            token=token,
            refused_by=limits[refused - 1] if refused else None,
        )

    async def _multi_zrem(self, token: str, keys: tuple[str, ...]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(key, token)
            await pipe.execute()

    @staticmethod
    async def _call(awaitable):  # type: ignore[no-untyped-def]
        try:
            return await awaitable
        except RedisError as exc:
            raise FoyerError("unavailable", "rate limiter unavailable, try again") from exc
