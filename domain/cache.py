"""A small per-node read-through cache for the hot paths (order placement, sold_out answers).

Guarantees:
- **Single flight.** A thundering herd on a cold or expired key makes ONE load; every waiter gets
  its result (or its exception). At an on-sale, hundreds of buyers arrive in the same
  millisecond on a cold node: without this each of them would queue a query for the same rows
  and exhaust the connection pool before the first hold is placed.
- **Freshness.** An entry lives `ttl` seconds. `invalidate(key)` drops it at once on this node,
  and a load that was already running when the key was invalidated is not stored (its callers
  still get its answer; the next caller loads again).
- **Stale on error** (opt-in, `stale_on_error=True`): when a reload fails, the last value is
  served instead of the error (and kept for another `ttl`, so a failing database is asked again
  once per TTL, not once per request): a PostgreSQL blip does not turn into failed requests for
  data that rarely changes.
- **Bounded.** At most `max_entries` keys; the oldest insertion is evicted first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ReadThroughCache(Generic[V]):
    def __init__(self, ttl_seconds: float, *, max_entries: int = 10_000, stale_on_error: bool = False) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.stale_on_error = stale_on_error
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._loading: dict[Hashable, asyncio.Future[V]] = {}
        self.loads = 0

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        running = self._loading.get(key)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = fut
        try:
            self.loads += 1
            try:
                value = await load()
            except Exception:
                if self.stale_on_error and entry is not None:
                    value = entry[1]
                else:
                    raise
            if self._loading.get(key) is fut:  # not invalidated meanwhile
                self._entries.pop(key, None)
                self._entries[key] = (time.monotonic(), value)
                if len(self._entries) > self.max_entries:
                    self._entries.pop(next(iter(self._entries)))
            fut.set_result(value)
            return value
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it, no "never retrieved" warning
            raise
        finally:
            if self._loading.get(key) is fut:
                del self._loading[key]

    def invalidate(self, key: Hashable) -> None:
        self._entries.pop(key, None)
        self._loading.pop(key, None)
