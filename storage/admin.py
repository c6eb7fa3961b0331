"""Admin data: the node registry (Redis), user support queries and the admin audit trail (PostgreSQL).

Node registry: every node and worker refreshes `nodes` (a sorted set scored by last heartbeat,
Unix seconds) and `node:<id>` (its description, with a TTL) every `node_heartbeat_seconds`.
A node is alive while its last heartbeat is younger than three intervals; a stopping node
removes itself. Redis keys only through `Keyspace`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from storage.redis import Keyspace


async def heartbeat(redis: aioredis.Redis, keys: Keyspace, node_id: str, info: dict[str, Any], *, ttl: float) -> None:
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(keys("nodes"), {node_id: now})
        pipe.set(keys("node", node_id), orjson.dumps({**info, "heartbeat_at": now}), px=int(ttl * 1000))
        pipe.zremrangebyscore(keys("nodes"), "-inf", now - max(ttl * 20, 3600))
        await pipe.execute()


async def remove_node(redis: aioredis.Redis, keys: Keyspace, node_id: str) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(keys("nodes"), node_id)
        pipe.delete(keys("node", node_id))
        await pipe.execute()


async def alive_nodes(redis: aioredis.Redis, keys: Keyspace, *, ttl: float) -> list[dict[str, Any]]:
    """Nodes whose last heartbeat is younger than `ttl` seconds, with their descriptions."""
    ids = await redis.zrangebyscore(keys("nodes"), time.time() - ttl, "+inf")
    if not ids:
        return []
    names = [i.decode() if isinstance(i, bytes) else i for i in ids]
    raw = await redis.mget([keys("node", n) for n in names])
    nodes = []
    for name, value in zip(names, raw, strict=True):
        if value is not None:
            nodes.append({"node_id": name, **orjson.loads(value)})
    return sorted(nodes, key=lambda n: n["node_id"])
