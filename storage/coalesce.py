"""Redis state of coalesced broadcasts (poll results, Q&A vote counts): dirty flags and one
broadcaster per key across all nodes.

Per key (e.g. `poll:<id>`): a dirty flag, a broadcaster lock (owner token, TTL) and membership
in a set of keys with work outstanding. Each operation is one atomic script, so:
- `mark` (after a vote commits) sets the flag and takes the lock when nobody holds it; the
  caller that gets True must run the broadcaster;
- `tick` (the broadcaster, once per period) consumes the flag and keeps the lock (True: send
  now) or, when nothing changed, releases the lock and leaves the set in the same step — so a
  `mark` either sees the lock held (and its change is consumed by the holder's next tick) or
  takes the lock itself. No change is left unsent while a broadcaster lives;
- `adopt` (a sweeper on every node) takes over keys left in the set without a lock holder —
  their broadcaster's node died — and broadcasts them once more.
Losing these keys (Redis restart) loses at most pending broadcasts, never counts: the counts
live in PostgreSQL and join snapshots read them there.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from storage.redis import Keyspace

# KEYS: dirty, lock, set.  ARGV: token, lock ttl ms, member
_MARK = """
redis.call('SET', KEYS[1], '1', 'EX', 86400)
redis.call('SADD', KEYS[3], ARGV[3])
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# Returns 1: changed since the last tick (send now); 0: nothing changed, lock released; -1: lock lost.
_TICK = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[3])
return 0
"""

# Take over an orphaned key (in the set, no lock holder). Returns 1 when taken.
_ADOPT = """
if redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 0 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


class CoalesceStore:
    def __init__(self, redis: aioredis.Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self.set_key = keys("live", "co", "keys")
        self._mark = redis.register_script(_MARK)
        self._tick = redis.register_script(_TICK)
        self._adopt = redis.register_script(_ADOPT)

    def _keys(self, member: str) -> list[str]:
        return [self.keys("live", "co", "d", member), self.keys("live", "co", "l", member), self.set_key]

    async def mark(self, member: str, *, token: str, ttl_ms: int) -> bool:
        return bool(await self._mark(keys=self._keys(member), args=[token, ttl_ms, member]))

    async def tick(self, member: str, *, token: str, ttl_ms: int) -> int:
        return int(await self._tick(keys=self._keys(member), args=[token, ttl_ms, member]))

    async def adopt(self, member: str, *, token: str, ttl_ms: int) -> bool:
        return bool(await self._adopt(keys=self._keys(member), args=[token, ttl_ms, member]))

    async def outstanding(self) -> list[str]:
        return [m.decode() for m in await self.redis.smembers(self.set_key)]
