"""In-process cache of what the order path needs about an event (status, ticket types, quotas).

The hot path of a ticket drop (and every `sold_out` answer) reads only this cache and Redis:
no PostgreSQL query for visibility, sale windows or limits. Entries live `ttl` seconds
(`FOYER_SALE_CACHE_SECONDS`) and are dropped at once on this node when an organizer changes the
event's types; other nodes see changes within the TTL. Counters in the cached types are NOT used
for decisions (the gate and PostgreSQL decide); they are only for display.
Loads are single-flight: a thundering herd on a cold entry makes one query.
"""

from __future__ import annotations

import uuid

from domain.cache import ReadThroughCache
from domain.tickets.models import SaleEvent
from storage import tickets as store
from storage.db import Database


class SaleCatalog:
    def __init__(self, db: Database, ttl_seconds: float) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self._cache: ReadThroughCache[SaleEvent | None] = ReadThroughCache(ttl_seconds)

    @property
    def loads(self) -> int:
        return self._cache.loads

    async def get(self, event_id: uuid.UUID) -> SaleEvent | None:
        async def load() -> SaleEvent | None:
            async with self.db.connection() as conn:
                return await store.load_sale_event(conn, event_id)

        return await self._cache.get(event_id, load)

    def invalidate(self, event_id: uuid.UUID) -> None:
        self._cache.invalidate(event_id)
