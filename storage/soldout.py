"""Per-node "sold out" flags in front of the Redis gate, invalidated across nodes by pub/sub.

Once the gate has answered `sold_out` for a counter (a ticket type or a shared quota), this node
remembers what was left on it (`remaining`, fewer than that buyer wanted) for `ttl` seconds and
answers the next buyers who want more than that without running the gate script (only an
Idempotency-Key marker lookup, see `Gate.admit`). Other admissions can only lower a counter, so
`remaining` stays an upper bound until an invalidation; buyers who want no more than it go to
the gate as usual. The flag is a cache of a
negative answer, never a reason to sell: being wrong costs a spurious `sold_out`, never an
oversell (PostgreSQL and the gate still decide every hold).

Staleness is bounded three ways:
- every change that gives seats back to a counter (expiry, cancel, refund, a compensation after a
  refused hold, a capacity change or rebuild, a reconciler repair) PUBLISHes the counter keys (or
  the event) on one channel, and every node drops those flags when the message arrives;
- a flag is only set from a gate reply if no invalidation arrived on this node between sending
  the admission and reading the reply (`generation`), so a release that raced the admission
  cannot be lost;
- flags are only set while this node's subscription is up; when it drops (Redis restart, network)
  every flag is dropped at once, and again when the subscription is back (messages may have been
  missed in between). The TTL bounds whatever is left (e.g. a silently dead connection).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

import redis.asyncio as aioredis

from storage.subscription import ChannelListener

log = logging.getLogger("foyer.tickets.soldout")


class SoldOutFlags:
    def __init__(self, redis: aioredis.Redis, channel: str, ttl_s: float) -> None:
        self.redis = redis
        self.channel = channel
        self.ttl = ttl_s
        self._flags: dict[str, tuple[float, int, uuid.UUID]] = {}  # counter key -> (expires, remaining, event)
        self.generation = 0  # bumped by every invalidation this node sees
        self.listening = False
        self._listener = ChannelListener(redis, channel, name="soldout_listener", on_message=self._apply,
                                         on_subscribed=self._subscribed, on_lost=self._lost)
        self.hits = 0
        self.invalidations = 0

    # --- reading and setting ------------------------------------------------------------------
    def sold_out_index(self, units: tuple[tuple[str, int], ...]) -> int:
        """Index of the first unit this node knows cannot be served (wants more than the counter's
        remembered `remaining`), else -1. No I/O."""
        flags = self._flags
        if not flags:
            return -1
        now = time.monotonic()
        for j, (key, qty) in enumerate(units):
            entry = flags.get(key)
            if entry is not None:
                if entry[0] <= now:
                    del flags[key]
                elif qty > entry[1]:
                    self.hits += 1
                    return j
        return -1

    def set(self, key: str, remaining: int, event_id: uuid.UUID, generation: int) -> None:
        """Remember a `sold_out` answer (the counter had `remaining`) that the gate gave for an
        admission sent when this node's invalidation generation was `generation`."""
        if self.ttl <= 0 or not self.listening or generation != self.generation:
            return
        if len(self._flags) > 100_000:
            self._flags.clear()
        self._flags[key] = (time.monotonic() + self.ttl, max(0, remaining), event_id)

    def clear(self) -> None:
        self.generation += 1
        self._flags.clear()

    def _apply(self, message: str) -> None:
        self.generation += 1
        self.invalidations += 1
        kind, _, rest = message.partition(":")
        if kind == "e":
            try:
                event_id = uuid.UUID(rest)
            except ValueError:
                self._flags.clear()
                return
            for key in [k for k, (_, _, ev) in self._flags.items() if ev == event_id]:
                del self._flags[key]
        elif kind == "k":
            for key in rest.split(" "):
                self._flags.pop(key, None)
        else:
            self._flags.clear()

    # --- publishing (after the change is applied in Redis / committed in PostgreSQL) -------------
    @staticmethod
    def keys_message(keys: Iterable[str]) -> str:
        return "k:" + " ".join(keys)

    @staticmethod
    def event_message(event_id: uuid.UUID) -> str:
        return f"e:{event_id}"

    def apply_local(self, message: str) -> None:
        """The publishing node drops its own flags at once (its own message arrives later too)."""
        self._apply(message)

    # --- the subscription (storage/subscription.py keeps it up) ----------------------------------
    def start(self) -> None:
        self._listener.start()

    async def wait_subscribed(self, within_s: float) -> bool:
        return await self._listener.wait_subscribed(within_s)

    async def stop(self) -> None:
        await self._listener.stop()
        self._lost()

    async def _subscribed(self) -> None:
        """Messages may have been missed while not subscribed: start from no flags."""
        self.clear()
        self.listening = True

    def _lost(self) -> None:
        self.listening = False
        self.clear()
