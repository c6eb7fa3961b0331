"""Presence in Redis: per-room member counts by node, and which users are online.

Layout (all keys under `live:`):
- `pr:<room>`  HASH node_id -> JSON {"n": users on that node, "t": unix time written,
                "u": [[user_id, name], ...] (a sample of at most `list_max`)}
- `on:<user>`  HASH node_id -> unix time until which the user counts as online there
Each node rewrites its own fields (coalesced, at most once per presence interval per room, and
all of them every refresh period), so a crashed node's fields go stale and are ignored by
readers after `stale_after` seconds; key TTLs clean them up.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import orjson
import redis.asyncio as aioredis

from storage.redis import Keyspace


class PresenceStore:
    def __init__(self, redis: aioredis.Redis, keys: Keyspace, *, node_id: str, ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.node = node_id
        self.ttl = ttl

    def room_key(self, room: str) -> str:
        return self.keys("live", "pr", room)

    def user_key(self, user_id: uuid.UUID | str) -> str:
        return self.keys("live", "on", str(user_id))

    async def write(self, rooms: Iterable[tuple[str, int, list[list[str]]]],
                    online: Iterable[uuid.UUID], offline: Iterable[uuid.UUID], *, online_until: float) -> None:
        """One pipeline: this node's entry for each room, and online/offline users."""
        now = int(time.time())
        until = str(int(online_until)).encode()
        async with self.redis.pipeline(transaction=False) as pipe:
            n = 0
            for room, count, sample in rooms:
                key = self.room_key(room)
                if count:
                    pipe.hset(key, self.node, orjson.dumps({"n": count, "t": now, "u": sample}))
                    pipe.expire(key, self.ttl)
                else:
                    pipe.hdel(key, self.node)
                n += 1
            for user in online:
                key = self.user_key(user)
                pipe.hset(key, self.node, until)
                pipe.expire(key, self.ttl)
                n += 1
            for user in offline:
                pipe.hdel(self.user_key(user), self.node)
                n += 1
            if n:
                await pipe.execute()

    async def read_room(self, room: str) -> dict[str, dict]:
        raw = await self.redis.hgetall(self.room_key(room))
        out: dict[str, dict] = {}
        for node, value in raw.items():
            try:
                out[node.decode()] = orjson.loads(value)
            except ValueError:
                continue
        return out

    async def online_many(self, user_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        users = list(user_ids)
        if not users:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for u in users:
                pipe.hvals(self.user_key(u))
            replies = await pipe.execute()
        now = time.time()
        return {u for u, vals in zip(users, replies, strict=True) if any(float(v) > now for v in vals)}

    async def is_online(self, user_id: uuid.UUID | str) -> bool:
        raw = await self.redis.hgetall(self.user_key(user_id))
        now = time.time()
        return any(float(v) > now for v in raw.values())
