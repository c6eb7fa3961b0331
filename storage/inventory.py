"""The Redis inventory gate and the per-node group-commit batcher of holds.

Gate (Redis, never the source of truth):
- one counter per ticket type and per shared quota: seats the gate still lets through
  (`tix:gate:t:<type>`, `tix:gate:q:<quota>`), and per event a ready key holding an epoch
  (`tix:gate:ready:<event>`);
- `admit` runs one Lua script (admissions of one event-loop tick share one call): missing ready key or counter -> the gate rebuilds that event from
  PostgreSQL under a Redis lock (`SET NX PX`) and retries; an Idempotency-Key marker already
  present -> `seen` (the caller replays or answers 409/422); a counter below the wanted quantity
  -> `sold_out` (no PostgreSQL work at all); else every counter is decremented and the marker
  set, atomically;
- after the batch commits, `settle` gives back what PostgreSQL refused (only if the epoch is
  unchanged, i.e. no rebuild happened since admission) and clamps refused counters to
  PostgreSQL's remaining seats, so a gate that over-counts (after a rebuild raced in-flight holds)
  converges; seats returned later (expiry, cancel, refund) are added back with `release`.
- Error direction: the gate may over-count (PostgreSQL then refuses and the gate is clamped); it
  under-counts only if a node dies between admission and commit, or in the tiny race of a release
  with a clamp; a rebuild (`invalidate`, Redis restart) resets it from PostgreSQL.
- If Redis is unreachable the gate admits everything (logged): PostgreSQL alone still refuses
  oversells, just slower.
- In front of the script, per-node sold-out flags (storage/soldout.py): once the gate said
  `sold_out` for a counter, this node answers its next buyers without the script, and only looks
  up their Idempotency-Key markers (one MGET per event-loop tick for all of them, so a repeated
  key still gets its first answer). Every change that gives seats back publishes an invalidation.

The group-commit batcher of holds lives in storage/batcher.py (re-exported here).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from domain.errors import FoyerError
from domain.tickets.models import HoldOutcome, HoldRequest
from storage.batcher import CommitBatch, HoldBatcher
from storage.db import Database
from storage.markers import LOOKUP_FAILED, MarkerLookups
from storage.redis import Keyspace
from storage.soldout import SoldOutFlags

log = logging.getLogger("foyer.tickets.gate")

MARKER_TTL_MS = 86_400_000
PENDING_MARKER_TTL_MS = 60_000

# Many admissions in one call (coalesced per event-loop tick), processed in order, atomically.
# Key names travel in ARGV: Foyer's gate needs one Redis (or one cluster slot per deployment).
# ARGV: nreq, marker ttl ms, then per request: ready, marker ('' = none), marker value, n, (key, qty) x n
_ADMIT_MANY = """
local out = {}
local p = 3
for r = 1, tonumber(ARGV[1]) do
  local ready, marker, mval, n = ARGV[p], ARGV[p + 1], ARGV[p + 2], tonumber(ARGV[p + 3])
  local base = p + 4
  p = base + 2 * n
  local res = nil
  local epoch = redis.call('GET', ready)
  if not epoch then
    res = {'rebuild', ''}
  else
    if marker ~= '' then
      local seen = redis.call('GET', marker)
      if seen then res = {'seen', epoch, seen} end
    end
    if not res then
      for j = 0, n - 1 do
        local v = redis.call('GET', ARGV[base + 2 * j])
        if not v then res = {'rebuild', ''} break end
        if tonumber(v) < tonumber(ARGV[base + 2 * j + 1]) then res = {'sold_out', epoch, tostring(j + 1), v} break end
      end
    end
    if not res then
      for j = 0, n - 1 do redis.call('DECRBY', ARGV[base + 2 * j], ARGV[base + 2 * j + 1]) end
      if marker ~= '' then redis.call('SET', marker, mval, 'PX', ARGV[2]) end
      res = {'ok', epoch}
    end
  end
  out[r] = res
end
return out
"""

# KEYS: ready, counters...   ARGV: epoch ('*' = any), add..., cap... (-1 = no cap)
_SETTLE = """
local n = #KEYS - 1
local epoch = redis.call('GET', KEYS[1])
if ARGV[1] ~= '*' and epoch ~= ARGV[1] then return 0 end
for i = 1, n do
  local v = redis.call('GET', KEYS[i + 1])
  if v then
    v = tonumber(v) + tonumber(ARGV[i + 1])
    local cap = tonumber(ARGV[n + i + 1])
    if cap >= 0 and v > cap then v = cap end
    if v < 0 then v = 0 end
    redis.call('SET', KEYS[i + 1], v)
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Admission:
    result: str  # ok | sold_out | seen | bypass (Redis down)
    event_id: uuid.UUID
    epoch: str = ""
    units: tuple[tuple[str, int], ...] = ()
    marker_key: str | None = None
    seen: str = ""  # the marker value found, for `seen`
    failed_index: int = -1  # for sold_out: which unit ran out


class Gate:
    def __init__(self, redis: aioredis.Redis, keys: Keyspace, db: Database, *,
                 sold_out_ttl_s: float = 0.0) -> None:
        self.redis = redis
        self.keys = keys
        self.db = db
        self.flags = SoldOutFlags(redis, keys("tix", "gate", "changes"), sold_out_ttl_s)
        self._key_cache: dict[tuple[str, uuid.UUID], str] = {}
        self._marker_prefix = keys("tix", "idem", "")
        self._admit_many = redis.register_script(_ADMIT_MANY)
        self._queued: list[tuple[list, asyncio.Future]] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task] = set()
        self.admit_calls = 0
        self._settle = redis.register_script(_SETTLE)
        self._rebuilding: dict[uuid.UUID, asyncio.Future] = {}
        self._last_warning = 0.0
        self.markers = MarkerLookups(redis, warn=self._warn)  # (sold_out answers with a key)

    # --- key names ---------------------------------------------------------------------------
    def _cached_key(self, kind: str, ident: uuid.UUID) -> str:
        key = self._key_cache.get((kind, ident))
        if key is None:
            if len(self._key_cache) > 100_000:
                self._key_cache.clear()
            key = self._key_cache[(kind, ident)] = self.keys("tix", "gate", kind, ident)
        return key

    def ready_key(self, event_id: uuid.UUID) -> str:
        return self._cached_key("ready", event_id)

    def type_key(self, type_id: uuid.UUID) -> str:
        return self._cached_key("t", type_id)

    def quota_key(self, quota_id: uuid.UUID) -> str:
        return self._cached_key("q", quota_id)

    def marker_key(self, user_id: uuid.UUID, idempotency_key: str) -> str:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        return f"{self._marker_prefix}{user_id}:{digest}"

    def units_for(self, lines: Sequence[tuple[uuid.UUID, uuid.UUID | None, int]]) -> tuple[tuple[str, int], ...]:
        """(type_id, quota_id, qty) lines -> merged (counter key, qty) units, sorted by key."""
        if len(lines) == 1 and lines[0][1] is None:
            return ((self.type_key(lines[0][0]), lines[0][2]),)
        merged: dict[str, int] = {}
        for type_id, quota_id, qty in lines:
            k = self.type_key(type_id)
            merged[k] = merged.get(k, 0) + qty
            if quota_id is not None:
                k = self.quota_key(quota_id)
                merged[k] = merged.get(k, 0) + qty
        return tuple(sorted(merged.items()))

    # --- admission ---------------------------------------------------------------------------
    async def known_answer(self, event_id: uuid.UUID, units: tuple[tuple[str, int], ...], *,
                           marker_key: str | None = None) -> Admission | None:
        """The answer this node can give without the gate script: `sold_out` when a sold-out flag
        covers the request and its Idempotency-Key was never used (one batched MGET, no key: no
        I/O), `seen` when it was; None when the gate must decide (call `admit`)."""
        flagged = self.flags.sold_out_index(units)
        if flagged < 0:
            return None
        seen = await self.markers.lookup(marker_key) if marker_key else None
        if seen is None:
            return Admission("sold_out", event_id, "", units, failed_index=flagged)
        if seen != LOOKUP_FAILED:
            return Admission("seen", event_id, "", units, marker_key, seen=seen)
        return None

    async def admit(self, event_id: uuid.UUID, units: tuple[tuple[str, int], ...], *,
                    marker_key: str | None = None, marker_value: str = "") -> Admission:
        """Run the gate script (callers ask `known_answer` first)."""
        args: list = [self.ready_key(event_id), marker_key or "", marker_value if marker_key else "", len(units)]
        for k, q in units:
            args += [k, q]
        for _attempt in range(3):
            generation = self.flags.generation
            try:
                reply = await self._coalesced(args)
            except NoScriptError:  # Redis restarted and lost the script cache: redis-py reloads
                continue
            except (RedisError, OSError) as exc:
                self._warn("inventory gate unavailable, PostgreSQL alone guards this hold: %r", exc)
                return Admission("bypass", event_id, units=units)
            result = _text(reply[0])
            if result == "rebuild":
                await self.rebuild(event_id)
                continue
            epoch = _text(reply[1])
            if result == "ok":
                return Admission("ok", event_id, epoch, units, marker_key)
            if result == "seen":
                return Admission("seen", event_id, epoch, units, marker_key, seen=_text(reply[2]))
            failed = int(_text(reply[2])) - 1
            self.flags.set(units[failed][0], int(_text(reply[3])), event_id, generation)
            return Admission("sold_out", event_id, epoch, units, failed_index=failed)
        raise FoyerError("busy", "the inventory gate is rebuilding, try again", details={"retry_after": 1})

    async def settle(self, done: Sequence[tuple[HoldRequest, HoldOutcome]],
                     type_available: dict[uuid.UUID, int], quota_available: dict[uuid.UUID, int],
                     *, marker_value: Callable[[HoldRequest], str]) -> None:
        """After a batch commit: finalize markers of granted holds, compensate refused ones."""
        comp: dict[tuple[uuid.UUID, str], Counter] = defaultdict(Counter)
        caps: dict[tuple[uuid.UUID, str], dict[str, int]] = defaultdict(dict)
        pipe = self.redis.pipeline(transaction=False)
        for req, outcome in done:
            adm: Admission | None = req.admission
            if adm is None or adm.result != "ok":
                continue
            if outcome.ok:
                if adm.marker_key:
                    pipe.set(adm.marker_key, marker_value(req), px=MARKER_TTL_MS)
                continue
            if adm.marker_key and outcome.code != "duplicate":
                pipe.delete(adm.marker_key)
            group = (adm.event_id, adm.epoch)
            for key, qty in adm.units:
                comp[group][key] += qty
            if outcome.code == "sold_out":
                if outcome.quota_id is not None and outcome.quota_id in quota_available:
                    caps[group][self.quota_key(outcome.quota_id)] = quota_available[outcome.quota_id]
                elif outcome.ticket_type_id in type_available:
                    caps[group][self.type_key(outcome.ticket_type_id)] = type_available[outcome.ticket_type_id]
        grown: set[str] = set()
        for (event_id, epoch), units in comp.items():
            cnt = [k for k in units]
            grown.update(cnt)
            await self._settle(keys=[self.ready_key(event_id), *cnt],
                         args=[epoch, *(units[k] for k in cnt), *(caps[(event_id, epoch)].get(k, -1) for k in cnt)],
                         client=pipe)
        self._publish(pipe, self.flags.keys_message(sorted(grown)) if grown else None)
        await self._run(pipe)

    async def compensate(self, adm: Admission) -> None:
        """Give back a single admission whose request failed before reaching PostgreSQL."""
        if adm.result != "ok":
            return
        pipe = self.redis.pipeline(transaction=False)
        if adm.marker_key:
            pipe.delete(adm.marker_key)
        await self._settle(keys=[self.ready_key(adm.event_id), *(k for k, _ in adm.units)],
                     args=[adm.epoch, *(q for _, q in adm.units), *(-1 for _ in adm.units)], client=pipe)
        self._publish(pipe, self.flags.keys_message(k for k, _ in adm.units))
        await self._run(pipe)

    async def release(self, types: Counter, quotas: Counter) -> None:
        """Seats returned (positive) or taken outside the gate (negative, e.g. a late payment
        re-acquiring an expired hold) in PostgreSQL, after commit: applied to existing counters."""
        units = [(self.type_key(t), n) for t, n in types.items() if n]
        units += [(self.quota_key(q), n) for q, n in quotas.items() if n]
        if not units:
            return
        # The ready key is irrelevant with '*': a missing counter is left for the next rebuild.
        pipe = self.redis.pipeline(transaction=False)
        await self._settle(keys=[self.keys("tix", "gate", "any"), *(k for k, _ in units)],
                     args=["*", *(n for _, n in units), *(-1 for _ in units)], client=pipe)
        grown = [k for k, n in units if n > 0]
        self._publish(pipe, self.flags.keys_message(grown) if grown else None)
        await self._run(pipe)

    async def set_marker(self, key: str, value: str) -> None:
        try:
            await self.redis.set(key, value, px=MARKER_TTL_MS)
        except (RedisError, OSError) as exc:
            self._warn("could not set idempotency marker: %r", exc)

    async def delete_marker(self, key: str) -> None:
        try:
            await self.redis.delete(key)
        except (RedisError, OSError) as exc:
            self._warn("could not delete idempotency marker: %r", exc)

    # --- rebuild -----------------------------------------------------------------------------
    async def invalidate(self, event_id: uuid.UUID) -> None:
        """Forget the event's gate; the next admission rebuilds it from PostgreSQL."""
        message = self.flags.event_message(event_id)
        self.flags.apply_local(message)
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(self.ready_key(event_id))
            pipe.publish(self.flags.channel, message)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self._warn("could not invalidate the gate: %r", exc)

    async def rebuild(self, event_id: uuid.UUID) -> None:
        """Load the event's counters (and recent order idempotency markers) from PostgreSQL.

        One rebuild per event at a time across all nodes (Redis lock); others wait for the ready
        key. Single-flight within this node."""
        running = self._rebuilding.get(event_id)
        if running is not None:
            await asyncio.shield(running)
            return
        fut = asyncio.get_running_loop().create_future()
        self._rebuilding[event_id] = fut
        try:
            await self._rebuild(event_id)
            fut.set_result(None)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._rebuilding.pop(event_id, None)

    async def _rebuild(self, event_id: uuid.UUID) -> None:
        lock_key = self.keys("tix", "gate", "lock", event_id)
        token = secrets.token_hex(8)
        deadline = time.monotonic() + 5.0
        while not await self.redis.set(lock_key, token, nx=True, px=10_000):
            if await self.redis.exists(self.ready_key(event_id)):
                return
            if time.monotonic() > deadline:
                raise FoyerError("busy", "the inventory gate is rebuilding, try again", details={"retry_after": 1})
            await asyncio.sleep(0.02)
        try:
            if await self.redis.exists(self.ready_key(event_id)):
                return
            types, quotas = await self.load_available(event_id)
            async with self.db.connection() as conn:
                markers = await conn.fetch(
                    """SELECT o.user_id, o.idempotency_key, k.fingerprint FROM orders o
                         JOIN idempotency_keys k ON k.scope = 'orders' AND k.principal = o.user_id::text
                                                AND k.key = o.idempotency_key AND k.expires_at > now()
                        WHERE o.event_id = $1 AND o.idempotency_key IS NOT NULL
                          AND o.created_at > now() - interval '1 day'""", event_id)
            pipe = self.redis.pipeline(transaction=True)
            for tid, avail in types.items():
                pipe.set(self.type_key(tid), avail)
            for qid, avail in quotas.items():
                pipe.set(self.quota_key(qid), avail)
            for r in markers:
                pipe.set(self.marker_key(r["user_id"], r["idempotency_key"]), "d|" + bytes(r["fingerprint"]).hex(),
                         px=MARKER_TTL_MS)
            pipe.set(self.ready_key(event_id), secrets.token_hex(8))
            pipe.publish(self.flags.channel, self.flags.event_message(event_id))
            pipe.sadd(self.keys("tix", "gate", "events"), str(event_id))  # for the reconciler
            await pipe.execute()
            log.info("inventory gate rebuilt for event %s (%d types, %d quotas, %d markers)",
                     event_id, len(types), len(quotas), len(markers))
        finally:
            try:
                await self.redis.eval(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                    1, lock_key, token)
            except (RedisError, OSError):
                pass

    async def load_available(self, event_id: uuid.UUID) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, int]]:
        """PostgreSQL's remaining seats per type (0 when not active) and per quota of an event."""
        async with self.db.connection() as conn:
            types = await conn.fetch(
                """SELECT id, CASE WHEN status = 'active' THEN greatest(capacity - sold - held, 0) ELSE 0 END AS avail
                     FROM ticket_types WHERE event_id = $1""", event_id)
            quotas = await conn.fetch(
                "SELECT id, greatest(capacity - sold - held, 0) AS avail FROM ticket_quotas WHERE event_id = $1",
                event_id)
        return {r["id"]: r["avail"] for r in types}, {r["id"]: r["avail"] for r in quotas}

    async def announce(self, counter_keys: Sequence[str]) -> None:
        """Seats came back to these counters outside the usual paths (e.g. a reconciler repair):
        drop the sold-out flags here and on every node."""
        pipe = self.redis.pipeline(transaction=False)
        self._publish(pipe, self.flags.keys_message(counter_keys))
        await self._run(pipe)

    # --- coalescing: every admission of one event-loop tick goes in one Redis call -----------
    def _coalesced(self, args: list) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queued.append((args, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._start_flush)
        return fut

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        queued, self._queued = self._queued, []
        for i in range(0, len(queued), 500):
            task = asyncio.get_running_loop().create_task(self._flush(queued[i:i + 500]))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[tuple[list, asyncio.Future]]) -> None:
        args: list = [len(batch), PENDING_MARKER_TTL_MS]
        for a, _ in batch:
            args.extend(a)
        self.admit_calls += 1
        try:
            replies = await self._admit_many(keys=[], args=args)
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, fut), reply in zip(batch, replies, strict=True):
            if not fut.done():
                fut.set_result(reply)

    # --- helpers -----------------------------------------------------------------------------
    def _publish(self, pipe: aioredis.client.Pipeline, message: str | None) -> None:
        """Seats came back to some counters: drop the sold-out flags here and on every node."""
        if message is None:
            return
        self.flags.apply_local(message)
        pipe.publish(self.flags.channel, message)

    async def _run(self, pipe: aioredis.client.Pipeline) -> None:
        try:
            await pipe.execute()
        except NoScriptError:
            await self.redis.script_load(_SETTLE)
            self._warn("gate settle script was missing (Redis restarted); counters will rebuild", None)
        except (RedisError, OSError) as exc:
            self._warn("inventory gate settle failed (it will be rebuilt or clamped): %r", exc)

    def _warn(self, msg: str, arg: object) -> None:
        now = time.monotonic()
        if now - self._last_warning > 5:
            self._last_warning = now
            log.warning(msg, arg)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["Admission", "CommitBatch", "Gate", "HoldBatcher"]
