"""Live activity of one event, now: people connected per room (the live area's presence registry
in Redis), people active per room in the last 5 minutes, messages and joins per minute.

Rooms considered are the ones the analytics consumers saw activity in lately (plus the event's
lobby and staff rooms), so this never lists every room of every event.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from domain.services import Core
from storage import analytics as agg
from storage.presence import PresenceStore

FRESH_SECONDS = 30.0  # a node's presence entry older than this is from a node that went away


async def connected(core: Core, rooms: list[str]) -> dict[str, int]:
    store = PresenceStore(core.redis, core.keys, node_id=core.node_id, ttl=int(FRESH_SECONDS * 4))
    now = time.time()
    out: dict[str, int] = {}
    for room in rooms:
        entries = await store.read_room(room)
        out[room] = sum(int(e.get("n", 0)) for e in entries.values() if now - float(e.get("t", 0)) < FRESH_SECONDS)
    return out


async def live_now(core: Core, conn: Any, event_id: uuid.UUID) -> dict[str, Any]:
    data = await agg.live(conn, event_id)
    rooms = sorted({r["room"] for r in data["rooms"]} | {f"event:{event_id}", f"staff:{event_id}"}
                   | set(await agg.recent_rooms(conn, event_id, seconds=3600)))
    counts = await connected(core, rooms)
    active = {r["room"]: r["active_users"] for r in data["rooms"]}
    data["rooms"] = [{"room": r, "connected": counts.get(r, 0), "active_users": active.get(r, 0)} for r in rooms
                     if counts.get(r, 0) or active.get(r, 0)]
    recent = data["per_minute"][-1:] if data["per_minute"] else []
    data["messages_last_minute"] = recent[0]["messages"] if recent else 0
    return data
