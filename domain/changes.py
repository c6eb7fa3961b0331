"""The versioned schedule change log: every schedule change is recorded where it happens.

`record_changes` must be called with the connection of the transaction that makes the change,
AFTER the entity writes. In that same transaction it
1. bumps `events.schedule_version` by the number of changes under the event's row lock (so the
   versions of one event are gapless and totally ordered across nodes),
2. runs the caller's `guard` against the event as it is *now* (under the lock) — e.g. a session
   must still lie within the event and the event must not have been cancelled meanwhile; raising
   rolls the whole transaction back,
3. inserts one `schedule_changes` row per change (what, when, who, data),
4. appends one outbox row `schedule.changed`
   `{event_id, version, previous_version, changes: [{version, entity, entity_id, op, fields, data}]}`.

`data` is the entity's full snapshot after the change (the same shape `GET /schedule` returns),
or null for deletions, so clients apply a delta by upserting/removing by id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from storage import outbox
from storage import schedule as schedule_store
from storage.events import EventRow
from storage.schedule import EventState

Entity = str  # "event" | "session" | "speaker"
Op = str  # "created" | "updated" | "deleted"
SCHEDULE_EVENT_FIELDS = ("title", "starts_at", "ends_at", "timezone", "venue", "status")


class ScheduleEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The part of an event that belongs to its schedule (and bumps its version when changed)."""

    id: uuid.UUID
    slug: str
    title: str
    starts_at: datetime
    ends_at: datetime
    timezone: str
    venue: dict[str, Any] | None
    status: str

    @classmethod
    def of(cls, event: EventRow) -> ScheduleEvent:
        return cls(id=event.id, slug=event.slug, title=event.title, starts_at=event.starts_at,
                   ends_at=event.ends_at, timezone=event.timezone, venue=event.venue, status=event.status)


@dataclass(frozen=True, slots=True)
class Change:
    entity: Entity
    entity_id: uuid.UUID
    op: Op
    data: Any = None  # a msgspec Struct snapshot (or None for deletions)
    fields: tuple[str, ...] = ()


def snapshot(value: Any) -> dict[str, Any] | None:
    """JSON-ready snapshot (UUIDs and datetimes as strings, the same format every API uses)."""
    return None if value is None else msgspec.to_builtins(value)


async def record_changes(
    conn: asyncpg.Connection,
    *,
    event_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    changes: list[Change],
    guard: Callable[[EventState], None] | None = None,
) -> EventState:
    """Record `changes` as new schedule versions of the event; returns the event state after."""
    if not changes:
        raise ValueError("record_changes needs at least one change")
    state = await schedule_store.bump_version(conn, event_id, len(changes))
    if guard is not None:
        guard(state)
    first = state.version - len(changes) + 1
    rows = [(c.entity, c.entity_id, c.op, list(c.fields), snapshot(c.data)) for c in changes]
    await schedule_store.insert_changes(conn, event_id=event_id, first_version=first, changed_by=actor_id,
                                        changes=rows)
    await outbox.append(
        conn, type="schedule.changed", event_id=event_id,
        data={
            "event_id": str(event_id),
            "version": state.version,
            "previous_version": first - 1,
            "changes": [
                {"version": first + i, "entity": entity, "entity_id": str(entity_id), "op": op, "fields": fields,
                 "data": data}
                for i, (entity, entity_id, op, fields, data) in enumerate(rows)
            ],
        },
    )
    return state
