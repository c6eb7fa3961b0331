"""In-process cache of what the order path needs about an event (status, ticket types, quotas).

The hot path of a ticket drop (and every `sold_out` answer) reads only this cache and Redis:
no PostgreSQL query for visibility, sale windows or limits. Entries live `ttl` seconds
(`FOYER_SALE_CACHE_SECONDS`) and are dropped at once on this node when an organizer changes the
event's types; other nodes see changes within the TTL. Counters in the cached types are NOT used
for decisions (the gate and PostgreSQL decide); they are only for display.
Loads are single-flight: a thundering herd on a cold entry makes one query.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from domain.tickets.models import SaleEvent
from storage import tickets as store
from storage.db import Database


class SaleCatalog:
    def __init__(self, db: Database, ttl_seconds: float) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self._entries: dict[uuid.UUID, tuple[float, SaleEvent | None]] = {}
        self._loading: dict[uuid.UUID, asyncio.Future] = {}
        self.loads = 0

    async def get(self, event_id: uuid.UUID) -> SaleEvent | None:
        entry = self._entries.get(event_id)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        running = self._loading.get(event_id)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._loading[event_id] = fut
        try:
            self.loads += 1
            async with self.db.connection() as conn:
                sale = await store.load_sale_event(conn, event_id)
            self._entries[event_id] = (time.monotonic(), sale)
            if len(self._entries) > 10_000:
                self._entries.pop(next(iter(self._entries)))
            fut.set_result(sale)
            return sale
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            self._loading.pop(event_id, None)

    def invalidate(self, event_id: uuid.UUID) -> None:
        self._entries.pop(event_id, None)
