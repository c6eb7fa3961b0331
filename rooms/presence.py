"""Presence: live member counts per room across nodes, member lists, online users.

- Counts are distinct users per node, summed over nodes (a user connected to two nodes at
  once counts twice; rare behind a sticky balancer).
- Changes are coalesced: each node writes its entry and broadcasts one `presence:update` per
  room at most every `live_presence_interval_seconds`, with the new total `count` and, for rooms
  up to `live_presence_events_max` members, the `joined` [{id, name}] and `left` [id] users of
  that node since the last update. Larger rooms get counts only.
- Member lists: complete up to `live_presence_list_max` users, otherwise a sample of that size
  (`sampled: true`).
- `is_user_online(core, user_id)` / `online_users(core, ids)`: True while the user has a live
  connection on any node (marked within one presence interval of connecting; a crashed node's
  users stop counting when its heartbeat expires, ~3 refresh periods).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import time
import uuid
from typing import Any

from domain.services import Core
from rooms.broadcast import publish_ephemeral
from rooms.local import LocalRoom
from storage.presence import PresenceStore

log = logging.getLogger("foyer.rooms.presence")

REFRESH_SECONDS = 10.0
STALE_AFTER = 3 * REFRESH_SECONDS
# Presence entries are per node *process*: a restarted node (same node_id) never inherits the
# online marks of the process that crashed before it.
INSTANCE = f"{os.getpid()}-{secrets.token_hex(3)}"


def presence_node(core: Core) -> str:
    return f"{core.node_id}/{INSTANCE}"


def store_of(core: Core) -> PresenceStore:
    return PresenceStore(core.redis, core.keys, node_id=presence_node(core), ttl=int(STALE_AFTER * 4))


async def is_user_online(core: Core, user_id: uuid.UUID | str) -> bool:
    """Whether the user has a live Socket.IO connection on any node (for in-app vs push)."""
    return await store_of(core).is_online(user_id)


async def online_users(core: Core, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The subset of `user_ids` with a live connection on any node (two Redis round trips)."""
    return await store_of(core).online_many(user_ids)


class Presence:
    def __init__(self, core: Core, rooms: dict[str, LocalRoom]) -> None:
        self.core = core
        self.rooms = rooms
        live = core.settings.live
        self.interval = live.live_presence_interval_seconds
        self.list_max = live.live_presence_list_max
        self.events_max = live.live_presence_events_max
        self._store: PresenceStore | None = None
        self.user_conns: dict[uuid.UUID, int] = {}
        self.users_dirty: set[uuid.UUID] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def store(self) -> PresenceStore:
        if self._store is None:  # core.redis exists only once the node has started
            self._store = store_of(self.core)
        return self._store

    # --- online users ---------------------------------------------------------------------------

    def connected(self, user_id: uuid.UUID) -> None:
        n = self.user_conns.get(user_id, 0)
        self.user_conns[user_id] = n + 1
        if n == 0:
            self.users_dirty.add(user_id)

    def disconnected(self, user_id: uuid.UUID) -> None:
        n = self.user_conns.get(user_id, 0) - 1
        if n <= 0:
            self.user_conns.pop(user_id, None)
            self.users_dirty.add(user_id)
        else:
            self.user_conns[user_id] = n

    # --- loop ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # leave cleanly: our entries and online marks go now, not after they go stale
        try:
            await self.store.write(((r.name, 0, []) for r in self.rooms.values()), (), (), heartbeat_ttl=1)
            await self.store.forget_node(list(self.user_conns))
        except Exception:
            log.debug("presence cleanup on stop failed", exc_info=True)

    async def _run(self) -> None:
        last_refresh = 0.0
        while True:
            await asyncio.sleep(self.interval)
            try:
                now = time.monotonic()
                refresh = now - last_refresh >= REFRESH_SECONDS
                if refresh:
                    last_refresh = now
                await self.flush(refresh=refresh)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence flush failed")

    async def flush(self, *, refresh: bool = False) -> None:
        dirty = [r for r in self.rooms.values() if r.presence_dirty]
        rooms = list(self.rooms.values()) if refresh else dirty
        changes: list[tuple[LocalRoom, dict[str, str], set[uuid.UUID]]] = []
        for room in dirty:
            changes.append((room, room.joined, room.left))
            room.joined, room.left = {}, set()
            room.presence_dirty = False
        online = [u for u in self.users_dirty if u in self.user_conns]
        offline = [u for u in self.users_dirty if u not in self.user_conns]
        self.users_dirty = set()
        await self.store.write(((r.name, len(r.users), self._sample(r)) for r in rooms), online, offline,
                               heartbeat_ttl=int(STALE_AFTER))
        for room, joined, left in changes:
            await self._broadcast(room, joined, left)

    def _sample(self, room: LocalRoom) -> list[list[str]]:
        ids = list(room.users)
        if len(ids) > self.list_max:
            ids = random.sample(ids, self.list_max)
        return [[str(u), room.user_names.get(u, "")] for u in ids]

    async def _broadcast(self, room: LocalRoom, joined: dict[Any, str], left: set[Any]) -> None:
        summary = await self.summary(room)
        data: dict[str, Any] = {"count": summary["count"]}
        if summary["count"] <= self.events_max and len(joined) + len(left) <= self.events_max:
            data["joined"] = [{"id": str(u), "name": n} for u, n in joined.items()]
            data["left"] = [str(u) for u in left]
        await publish_ephemeral(self.core, room=room.name, event="presence:update", data=data)

    async def summary(self, room: LocalRoom, *, max_age: float = 0.0) -> dict[str, Any]:
        """{count, members: [{id, name}], sampled} across nodes (this node's part is live);
        `max_age` > 0 allows a cached answer that old (join storms)."""
        loop = asyncio.get_running_loop()
        if max_age > 0 and room.presence_cache is not None and loop.time() - room.presence_cache[0] < max_age:
            return room.presence_cache[1]
        entries = await self.store.read_room(room.name)
        entries[presence_node(self.core)] = {"n": len(room.users), "t": time.time(), "u": self._sample(room)}
        horizon = time.time() - STALE_AFTER
        count = 0
        members: dict[str, str] = {}
        for entry in entries.values():
            if entry.get("t", 0) < horizon:
                continue
            count += int(entry.get("n", 0))
            for uid, name in entry.get("u", ()):
                if len(members) < self.list_max:
                    members.setdefault(uid, name)
        result = {"count": count, "members": [{"id": u, "name": n} for u, n in members.items()],
                  "sampled": count > len(members)}
        room.presence_cache = (loop.time(), result)
        return result


__all__ = ["Presence", "is_user_online"]
