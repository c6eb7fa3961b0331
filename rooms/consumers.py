"""Outbox consumers that turn domain facts from the rest of the system into room events.

| outbox type           | room               | socket event        | payload (besides room, seq)          |
|-----------------------|--------------------|---------------------|--------------------------------------|
| `schedule.changed`    | `event:{event_id}` | `schedule:changed`  | the delta: `{event_id, version, previous_version, changes}` |
| `ticket.checked_in`   | `staff:{event_id}` | `checkin:update`    | `{checked_in?, checkin}` (= data)    |
| `announcement.posted` | `event:{event_id}` | `announcement`      | `{announcement}` (= data)            |

Delivery is at-least-once from the relay; each room event is published with the outbox event's
id as `dedupe_key`, so a redelivered fact never becomes a second room event.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from domain.consumers import Consumer
from domain.services import Core
from rooms.broadcast import publish
from storage.outbox import OutboxEvent

log = logging.getLogger("foyer.rooms.consumers")

_RESERVED = ("room", "seq")
TYPES = frozenset({"schedule.changed", "ticket.checked_in", "announcement.posted"})


def route(ev: OutboxEvent) -> tuple[str, str, dict[str, Any]] | None:
    """(room, socket event, data) for an outbox event, or None when it has no room."""
    if ev.event_id is None:
        return None
    data = ev.data if isinstance(ev.data, dict) else {"value": ev.data}
    if ev.type == "schedule.changed":
        return f"event:{ev.event_id}", "schedule:changed", {k: v for k, v in data.items() if k not in _RESERVED}
    if ev.type == "ticket.checked_in":
        out: dict[str, Any] = {"checkin": data}
        for key in ("checked_in", "checked_in_count", "count"):
            if isinstance(data.get(key), int):
                out["checked_in"] = data[key]
                break
        return f"staff:{ev.event_id}", "checkin:update", out
    if ev.type == "announcement.posted":
        return f"event:{ev.event_id}", "announcement", {"announcement": data}
    return None


def make_consumers(core: Core) -> list[Consumer]:
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

    return [Consumer(name="live.broadcasts", handle=handle, types=TYPES)]
