"""Per-user rate limits and slow mode for live rooms, in Redis (shared by every node).

- `hit(key, limit, window)`: GCRA (generic cell rate algorithm): at most `limit` actions in any
  burst, refilled evenly over `window` seconds; one atomic script, Redis's clock (so node clocks
  do not matter). Returns 0 when allowed, else the milliseconds until the next action is.
- `slow_mode(key, seconds)`: at most one action per `seconds`; returns the wait in ms or 0.
Losing these keys (Redis restart) only forgives some actions: they are never the source of truth.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from storage.redis import Keyspace

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, math.ceil(new_tat - now)))
return 0
"""


class LiveLimits:
    def __init__(self, redis: aioredis.Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self._gcra = redis.register_script(_GCRA)

    async def hit(self, bucket: str, subject: str, *, limit: int, window: float) -> int:
        interval = window * 1000.0 / limit
        return int(await self._gcra(keys=[self.keys("live", "rl", bucket, subject)],
                                    args=[interval, interval * limit]))

    async def slow_mode(self, room: str, user: str, *, seconds: int) -> int:
        key = self.keys("live", "slow", room, user)
        if await self.redis.set(key, b"1", px=seconds * 1000, nx=True):
            return 0
        ttl = await self.redis.pttl(key)
        return max(int(ttl), 1)
