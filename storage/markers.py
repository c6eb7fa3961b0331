"""Batched lookups of Idempotency-Key markers in Redis (for buyers answered from sold-out flags).

Every lookup made within `window_s` (or until 256 are queued) shares ONE `MGET`: on a loaded node
each Redis round trip costs tens of microseconds of kernel and client time, more than the rest of
a `sold_out` answer. A lookup resolves to the marker's value, None if there is none, or
`LOOKUP_FAILED` when Redis could not be asked (the caller then takes the long way).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis

LOOKUP_FAILED = "\0lookup-failed"
WINDOW_S = 0.003  # sold_out answers wait up to 3 ms to share one MGET
MAX_BATCH = 256


class MarkerLookups:
    def __init__(self, redis: aioredis.Redis, *, warn: Callable[[str, object], None]) -> None:
        self.redis = redis
        self.warn = warn
        self._queue: list[tuple[str, asyncio.Future]] = []
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task] = set()
        self.batches = 0  # MGETs sent
        self.lookups = 0  # keys looked up

    def lookup(self, key: str) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.append((key, fut))
        if len(self._queue) >= MAX_BATCH:
            self._start_flush()
        elif not self._scheduled:
            self._scheduled = True
            self._timer = loop.call_later(WINDOW_S, self._start_flush)
        return fut

    def _start_flush(self) -> None:
        if self._scheduled:
            self._scheduled = False
            if self._timer is not None:
                self._timer.cancel()
        queued, self._queue = self._queue, []
        if not queued:
            return
        self.batches += 1
        self.lookups += len(queued)
        task = asyncio.get_running_loop().create_task(self._flush(queued))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        try:
            values = await self.redis.mget([k for k, _ in batch])
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(LOOKUP_FAILED)
            raise
        except Exception as exc:  # Redis down: the callers go the long way (and bypass)
            self.warn("idempotency marker lookup failed: %r", exc)
            values = [LOOKUP_FAILED] * len(batch)
        for (_, fut), value in zip(batch, values, strict=True):
            if not fut.done():
                fut.set_result(None if value is None else (value.decode() if isinstance(value, bytes) else str(value)))
