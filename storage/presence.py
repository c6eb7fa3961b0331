"""Presence in Redis: per-room member counts by node, and which users are online.

Layout (all keys under `live:`):
- `pr:<room>`  HASH node_id -> JSON {"n": users on that node, "t": unix time written,
                "u": [[user_id, name], ...] (a sample of at most `list_max`)}
- `on:<user>`  HASH node_id -> "1" while the user has a connection on that node (written only on
               the user's first connect / last disconnect there, batched)
- `node:<id>`  a node's heartbeat, refreshed every few seconds with a TTL: the online fields of a
               node whose heartbeat expired (it crashed) are ignored and cleaned up lazily
Each node rewrites its own room entries (coalesced, at most once per presence interval per room,
and all of them every refresh period), so a crashed node's entries go stale and are ignored by
readers after `stale_after` seconds; key TTLs clean them up. Writes go out in pipelines of at
most `CHUNK` commands, so a mass connect or disconnect never builds one huge pipeline.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import orjson
import redis.asyncio as aioredis

from storage.redis import Keyspace

CHUNK = 200


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

    def node_key(self, node: str) -> str:
        return self.keys("live", "node", node)

    async def write(self, rooms: Iterable[tuple[str, int, list[list[str]]]],
                    online: Iterable[uuid.UUID], offline: Iterable[uuid.UUID], *, heartbeat_ttl: int) -> None:
        """This node's entry for each room, its online/offline users and its heartbeat."""
        now = int(time.time())
        commands: list[tuple] = [("set", self.node_key(self.node), b"1", heartbeat_ttl)]
        for room, count, sample in rooms:
            key = self.room_key(room)
            if count:
                commands.append(("hset", key, self.node, orjson.dumps({"n": count, "t": now, "u": sample})))
                commands.append(("expire", key, self.ttl))
            else:
                commands.append(("hdel", key, self.node))
        for user in online:
            commands.append(("hset", self.user_key(user), self.node, b"1"))
        for user in offline:
            commands.append(("hdel", self.user_key(user), self.node))
        for i in range(0, len(commands), CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                for cmd in commands[i:i + CHUNK]:
                    if cmd[0] == "set":
                        pipe.set(cmd[1], cmd[2], ex=cmd[3])
                    elif cmd[0] == "hset":
                        pipe.hset(cmd[1], cmd[2], cmd[3])
                    elif cmd[0] == "expire":
                        pipe.expire(cmd[1], cmd[2])
                    else:
                        pipe.hdel(cmd[1], cmd[2])
                await pipe.execute()

    async def forget_node(self, users: Iterable[uuid.UUID]) -> None:
        """On clean shutdown: this node's users go offline now and its heartbeat ends."""
        commands = [self.user_key(u) for u in users]
        for i in range(0, len(commands), CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in commands[i:i + CHUNK]:
                    pipe.hdel(key, self.node)
                await pipe.execute()
        await self.redis.delete(self.node_key(self.node))

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
        """Users with a connection on a live node (two round trips, whatever the count)."""
        users = list(user_ids)
        if not users:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for u in users:
                pipe.hkeys(self.user_key(u))
            replies = await pipe.execute()
        nodes = sorted({n for fields in replies for n in fields})
        if not nodes:
            return set()
        alive_flags = await self.redis.mget([self.node_key(n.decode()) for n in nodes])
        alive = {n for n, flag in zip(nodes, alive_flags, strict=True) if flag is not None}
        return {u for u, fields in zip(users, replies, strict=True) if any(f in alive for f in fields)}

    async def is_online(self, user_id: uuid.UUID | str) -> bool:
        return bool(await self.online_many([user_id]))  # type: ignore[list-item]
