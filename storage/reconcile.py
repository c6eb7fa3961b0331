"""The gate reconciler: finds and repairs drift between the Redis gate and PostgreSQL.

Why: the gate under-counts when a node dies between admitting a hold (the counter was decremented)
and committing it (PostgreSQL never saw it), or when a seat return could not reach Redis. Buyers
then see `sold_out` while PostgreSQL still has seats. It over-counts after a rebuild raced holds in
flight (harmless: PostgreSQL refuses, the counter is clamped).

How (every node runs the loop; one round at a time across nodes, `SET NX PX` lock):
- events with a gate are listed in a Redis set (added by every rebuild);
- a round reads, per event, the gate's epoch and counters, then PostgreSQL's available seats per
  type and quota (capacity - sold - held, 0 for archived types), then the gate again;
- an admission in flight shows as a difference too (counter already decremented, PostgreSQL not
  yet), so a difference is repaired only when the SAME observation (epoch, counters, PostgreSQL)
  was already made by the previous round, at least one interval earlier: nothing was admitted,
  committed, released or rebuilt in between, so nothing was in flight except what was lost;
- the repair is a compare-and-set script (epoch and every counter unchanged since observed), so a
  sale that starts again meanwhile is never overwritten; raised counters publish a sold-out flag
  invalidation, so every node sells the recovered seats at once.
A hold stuck in an open transaction for longer than an interval could be counted twice by a
repair: then the gate over-counts by that hold, which PostgreSQL refuses (the safe direction).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
import uuid

from redis.exceptions import RedisError

from storage.inventory import Gate

log = logging.getLogger("foyer.tickets.reconcile")

# KEYS: ready, counters...   ARGV: epoch, observed..., target...
_REPAIR = """
local n = #KEYS - 1
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 1, n do
  if redis.call('GET', KEYS[i + 1]) ~= ARGV[i + 1] then return 0 end
end
for i = 1, n do redis.call('SET', KEYS[i + 1], ARGV[n + i + 1]) end
return 1
"""


class GateReconciler:
    def __init__(self, gate: Gate, *, interval_s: float) -> None:
        self.gate = gate
        self.redis = gate.redis
        self.keys = gate.keys
        self.interval = interval_s
        self._repair = self.redis.register_script(_REPAIR)
        self.rounds = 0
        self.repairs = 0

    @property
    def events_key(self) -> str:
        return self.keys("tix", "gate", "events")

    async def run_once(self) -> int:
        """One round (if no other node holds the round lock); returns the counters repaired."""
        lock = self.keys("tix", "gate", "reconcile", "lock")
        if not await self.redis.set(lock, secrets.token_hex(8), nx=True, px=max(100, int(self.interval * 900))):
            return 0
        self.rounds += 1
        repaired = 0
        for raw in await self.redis.smembers(self.events_key):
            try:
                event_id = uuid.UUID(raw.decode() if isinstance(raw, bytes) else str(raw))
            except ValueError:
                await self.redis.srem(self.events_key, raw)
                continue
            repaired += await self._event(event_id)
        return repaired

    async def _event(self, event_id: uuid.UUID) -> int:
        gate = self.gate
        ready = gate.ready_key(event_id)
        types, quotas = await gate.load_available(event_id)
        counters = {gate.type_key(t): n for t, n in types.items()} | {gate.quota_key(q): n for q, n in quotas.items()}
        names = sorted(counters)
        before = await self.redis.mget([ready, *names])
        if before[0] is None:  # no gate (Redis restarted, or invalidated): the next buyer rebuilds it
            await self.redis.srem(self.events_key, str(event_id))
            return 0
        # PostgreSQL again: a commit between the two reads makes them differ (skip this round).
        types2, quotas2 = await gate.load_available(event_id)
        if (types2, quotas2) != (types, quotas) or await self.redis.mget([ready, *names]) != before:
            return 0
        epoch = before[0]
        current = [None if v is None else int(v) for v in before[1:]]
        target = [counters[k] for k in names]
        if current == target:
            return 0
        observation = hashlib.sha256(repr((epoch, current, target)).encode()).hexdigest()
        seen_key = self.keys("tix", "gate", "observed", event_id)
        previous = await self.redis.set(seen_key, observation, px=int(self.interval * 3000), get=True)
        if previous is None or (previous.decode() if isinstance(previous, bytes) else previous) != observation:
            return 0  # first time seen: confirm next round (an admission may be in flight)
        drift = {k: t - c for k, c, t in zip(names, current, target, strict=True) if c is not None and c != t}
        fix = [k for k in names if k in drift]
        if not fix:
            return 0
        observed = [str(current[names.index(k)]) for k in fix]
        ok = await self._repair(keys=[ready, *fix], args=[epoch, *observed, *(counters[k] for k in fix)])
        if not ok:
            return 0
        await self.redis.delete(seen_key)
        raised = [k for k in fix if drift[k] > 0]
        if raised:
            await self.gate.announce(raised)
        self.repairs += len(fix)
        log.warning("inventory gate of event %s repaired from PostgreSQL: %s", event_id,
                    ", ".join(f"{k.rsplit(':', 2)[-2]}:{k.rsplit(':', 1)[-1][:8]} {drift[k]:+d}" for k in fix))
        return len(fix)

    async def loop(self) -> None:
        """Every node: a round every `interval` (jittered); failures back off (capped, jittered)."""
        failures = 0
        while True:
            try:
                await asyncio.sleep(self.interval * (0.8 + 0.4 * random.random()))
                await self.run_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                failures += 1
                if failures == 1:
                    log.warning("gate reconciler: Redis unavailable (%r)", exc)
                await asyncio.sleep(min(60.0, self.interval * 2 ** failures) * (0.5 + random.random()))
            except Exception:
                failures += 1
                log.exception("gate reconciler failed (%d in a row)", failures)
                await asyncio.sleep(min(60.0, self.interval * 2 ** failures) * (0.5 + random.random()))
