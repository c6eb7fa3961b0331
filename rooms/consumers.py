"""Outbox consumers that turn domain facts from the rest of the system into room events.

| outbox type           | room               | socket event        | payload (besides room, seq)          |
|-----------------------|--------------------|---------------------|--------------------------------------|
| `schedule.changed`    | `event:{event_id}` | `schedule:changed`  | the delta: `{event_id, version, previous_version, changes}` |
| `ticket.checked_in` / `ticket.checked_out` | `staff:{event_id}` | `checkin:update` | `{checkin}` (= data) |
|  (coalesced, ≤ 1/s per event) | `staff:{event_id}` | `checkin:stats` | `{checked_in, inside, tickets}` |
| `announcement.posted` | `event:{event_id}` | `announcement`      | `{announcement}` (= data)            |

Delivery is at-least-once from the relay; each room event is published with the outbox event's
id as `dedupe_key`, so a redelivered fact never becomes a second room event. Check-in counts are
read from the door's tables (storage/checkins.stats) at most once a second per event, after the
check-ins they follow; a lost stats update is superseded by the next one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from domain.consumers import Consumer
from domain.services import Core
from rooms.broadcast import publish
from storage import checkins as checkins_store
from storage.outbox import OutboxEvent

log = logging.getLogger("foyer.rooms.consumers")

_RESERVED = ("room", "seq")
TYPES = frozenset({"schedule.changed", "ticket.checked_in", "ticket.checked_out", "announcement.posted"})
STATS_EVERY_SECONDS = 1.0


def route(ev: OutboxEvent) -> tuple[str, str, dict[str, Any]] | None:
    """(room, socket event, data) for an outbox event, or None when it has no room."""
    if ev.event_id is None:
        return None
    data = ev.data if isinstance(ev.data, dict) else {"value": ev.data}
    if ev.type == "schedule.changed":
        return f"event:{ev.event_id}", "schedule:changed", {k: v for k, v in data.items() if k not in _RESERVED}
    if ev.type in ("ticket.checked_in", "ticket.checked_out"):
        return f"staff:{ev.event_id}", "checkin:update", {"checkin": {**data, "type": ev.type}}
    if ev.type == "announcement.posted":
        return f"event:{ev.event_id}", "announcement", {"announcement": data}
    return None


class CheckinStats:
    """`checkin:stats` for an event at most every STATS_EVERY_SECONDS, after the latest check-in."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.last: dict[Any, float] = {}
        self.pending: dict[Any, asyncio.Task[None]] = {}

    def touch(self, event_id: Any) -> None:
        if event_id in self.pending:
            return
        loop = asyncio.get_running_loop()
        wait = max(0.0, self.last.get(event_id, 0.0) + STATS_EVERY_SECONDS - loop.time())
        self.pending[event_id] = loop.create_task(self._publish(event_id, wait))

    async def _publish(self, event_id: Any, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
            self.last[event_id] = asyncio.get_running_loop().time()
            del self.pending[event_id]  # check-ins from now on schedule the next update
            async with self.core.db.connection() as conn:
                stats = await checkins_store.stats(conn, event_id)
            await publish(self.core, room=f"staff:{event_id}", event="checkin:stats", data={
                "checked_in": stats["checked_in"], "inside": stats["inside"], "tickets": stats["tickets"],
                "inside_by_gate": stats["inside_by_gate"]})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("check-in stats for %s failed", event_id)
        finally:
            if self.pending.get(event_id) is asyncio.current_task():
                del self.pending[event_id]


def make_consumers(core: Core) -> list[Consumer]:
    stats = CheckinStats(core)

    async def handle(ev: OutboxEvent) -> None:
        target = route(ev)
        if target is None:
            log.debug("outbox %s %s has no room; skipped", ev.type, ev.id)
            return
        room, event, data = target
        try:
            await publish(core, room=room, event=event, data=data, dedupe_key=str(ev.id))
        except asyncpg.ForeignKeyViolationError:  # the event is gone: nobody left to tell
            log.info("outbox %s %s: event %s no longer exists; skipped", ev.type, ev.id, ev.event_id)
            return
        if ev.type in ("ticket.checked_in", "ticket.checked_out"):
            stats.touch(ev.event_id)

    return [Consumer(name="live.broadcasts", handle=handle, types=TYPES)]
