"""The Redis (or Valkey) client and key naming.

Every key and channel Foyer uses goes through `Keyspace`, which prefixes it with
`settings.redis_prefix`, so several deployments (or parallel test runs) share one Redis safely.
Redis is never the source of truth: everything in it can be rebuilt from PostgreSQL or is
allowed to be lost (rate-limit counters, caches, presence, replay streams with an epoch).
"""

from __future__ import annotations

import redis.asyncio as aioredis


class Keyspace:
    """Builds prefixed Redis key names: `keys("gate", type_id)` -> "foyer:gate:<type_id>"."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)


def connect_redis(url: str, *, max_connections: int = 64) -> aioredis.Redis:
    """A pooled asyncio client. Responses are bytes (decode where text is expected)."""
    return aioredis.Redis.from_url(
        url,
        max_connections=max_connections,
        health_check_interval=15,
        socket_keepalive=True,
        retry_on_timeout=True,
    )
