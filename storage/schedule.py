"""Sessions, the versioned change log and schedule reads in PostgreSQL.

Guarantees:
- No two `scheduled` sessions of one event overlap in the same (non-empty) room: the exclusion
  constraint `sessions_no_room_overlap` enforces it whatever the application checked before;
  `insert_session`/`update_session` run the write in a savepoint and translate a violation into
  `schedule_conflict` naming the session(s) now holding the slot (a deadlock between two
  conflicting writers is resolved by retrying the savepoint, see `_write_slot`).
- `bump_version` increments `events.schedule_version` with a row lock on the event (held to
  commit), so versions of one event are gapless and totally ordered, and returns the event's
  *current* bounds and status for a final check under that lock.
- `load_schedule` reads the event, its sessions (with ordered speaker ids) and its speakers in
  ONE statement, hence one consistent snapshot carrying its version.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from domain.errors import FoyerError
from storage.speakers import SpeakerRow

_SESSION_JSON = """jsonb_build_object(
    'id', s.id, 'event_id', s.event_id, 'title', s.title, 'abstract', s.abstract,
    'starts_at', s.starts_at, 'ends_at', s.ends_at, 'room', s.room, 'track', s.track,
    'capacity', s.capacity, 'status', s.status,
    'speaker_ids', coalesce(array(SELECT ss.speaker_id FROM session_speakers ss
                                   WHERE ss.session_id = s.id ORDER BY ss.position, ss.speaker_id), '{}'),
    'updated_at', s.updated_at)"""
_SESSION_ORDER = "s.starts_at, s.room, s.id"
_UPDATABLE = frozenset({"title", "abstract", "starts_at", "ends_at", "room", "track", "capacity"})
_DEADLOCK_RETRIES = 3


class SessionRow(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    event_id: uuid.UUID
    title: str
    abstract: str
    starts_at: datetime
    ends_at: datetime
    room: str
    track: str
    capacity: int | None
    status: str
    speaker_ids: list[uuid.UUID]
    updated_at: datetime


class EventState(msgspec.Struct, frozen=True, kw_only=True):
    """The event as seen under the version-bump lock."""

    version: int
    starts_at: datetime
    ends_at: datetime
    status: str


class ChangeRow(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    entity: str
    entity_id: uuid.UUID
    op: str
    fields: list[str]
    data: dict[str, Any] | None
    changed_at: datetime


class ScheduleSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    event: dict[str, Any]
    sessions: list[SessionRow]
    speakers: list[SpeakerRow]


def _session(value: Any) -> SessionRow:
    return msgspec.convert(value, SessionRow)


# --- sessions ---------------------------------------------------------------------------------------

async def get_session(conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID, *,
                      for_update: bool = False) -> SessionRow | None:
    lock = " FOR UPDATE OF s" if for_update else ""
    value = await conn.fetchval(f"SELECT {_SESSION_JSON} FROM sessions s WHERE s.id = $1{lock}", session_id)
    return _session(value) if value is not None else None


async def get_sessions(conn: asyncpg.Connection | asyncpg.Pool, session_ids: list[uuid.UUID]) -> list[SessionRow]:
    rows = await conn.fetch(
        f"SELECT {_SESSION_JSON} AS j FROM sessions s WHERE s.id = ANY($1::uuid[]) ORDER BY {_SESSION_ORDER}",
        session_ids,
    )
    return [_session(r["j"]) for r in rows]


async def room_conflicts(
    conn: asyncpg.Connection | asyncpg.Pool, *, event_id: uuid.UUID, room: str, starts_at: datetime,
    ends_at: datetime, exclude: uuid.UUID | None = None,
) -> list[SessionRow]:
    """Scheduled sessions in the same room whose time range overlaps [starts_at, ends_at)."""
    if not room:
        return []
    rows = await conn.fetch(
        f"""SELECT {_SESSION_JSON} AS j FROM sessions s
             WHERE s.event_id = $1 AND s.room = $2 AND s.status = 'scheduled'
               AND tstzrange(s.starts_at, s.ends_at) && tstzrange($3, $4)
               AND ($5::uuid IS NULL OR s.id <> $5)
             ORDER BY {_SESSION_ORDER} LIMIT 10""",
        event_id, room, starts_at, ends_at, exclude,
    )
    return [_session(r["j"]) for r in rows]


def iso(value: datetime) -> str:
    """UTC instant as the API writes it everywhere (`2031-05-12T09:00:00Z`)."""
    return msgspec.to_builtins(value)


def conflict_error(room: str, conflicts: list[SessionRow]) -> FoyerError:
    first = conflicts[0] if conflicts else None
    message = f"room {room!r} is already booked at that time"
    if first is not None:
        message += f" by {first.title!r} ({iso(first.starts_at)} – {iso(first.ends_at)})"
    return FoyerError(
        "schedule_conflict", message,
        details={
            "room": room,
            "conflicts": [
                {"session_id": str(c.id), "title": c.title, "starts_at": iso(c.starts_at), "ends_at": iso(c.ends_at)}
                for c in conflicts
            ],
        },
    )


async def _write_slot(conn: asyncpg.Connection, write: Callable[[], Awaitable[Any]], *, event_id: uuid.UUID,
                      room: str, starts_at: datetime, ends_at: datetime, exclude: uuid.UUID | None) -> Any:
    """Run a session write that may take a room slot, in a savepoint.

    Two transactions inserting conflicting slots at once may each wait for the other inside the
    exclusion check; PostgreSQL then aborts one with deadlock_detected. Only the savepoint is
    rolled back, so the write is retried: it now waits for the survivor and either fits (the
    survivor rolled back) or gets the exclusion violation, answered as `schedule_conflict`.
    """
    for attempt in range(_DEADLOCK_RETRIES + 1):
        try:
            async with conn.transaction():  # savepoint: the caller's transaction stays usable
                return await write()
        except asyncpg.DeadlockDetectedError:
            if attempt == _DEADLOCK_RETRIES:
                raise
        except asyncpg.ExclusionViolationError:
            conflicts = await room_conflicts(conn, event_id=event_id, room=room, starts_at=starts_at,
                                             ends_at=ends_at, exclude=exclude)
            raise conflict_error(room, conflicts) from None
    raise AssertionError("unreachable")


async def insert_session(
    conn: asyncpg.Connection, *, event_id: uuid.UUID, title: str, abstract: str, starts_at: datetime,
    ends_at: datetime, room: str, track: str, capacity: int | None,
) -> uuid.UUID:
    """Insert a scheduled session; `schedule_conflict` if the room is taken (exclusion constraint)."""
    async def write() -> uuid.UUID:
        return await conn.fetchval(
            """INSERT INTO sessions (event_id, title, abstract, starts_at, ends_at, room, track, capacity)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
            event_id, title, abstract, starts_at, ends_at, room, track, capacity,
        )

    return await _write_slot(conn, write, event_id=event_id, room=room, starts_at=starts_at, ends_at=ends_at,
                             exclude=None)


async def update_session(conn: asyncpg.Connection, session: SessionRow, changes: dict[str, Any]) -> None:
    """Set the given columns; `schedule_conflict` if the new slot overlaps (exclusion constraint)."""
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    if not changes:
        return
    names = sorted(changes)
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))

    async def write() -> None:
        await conn.execute(f"UPDATE sessions SET {assignments}, updated_at = now() WHERE id = $1",
                           session.id, *(changes[n] for n in names))

    await _write_slot(conn, write, event_id=session.event_id, room=changes.get("room", session.room),
                      starts_at=changes.get("starts_at", session.starts_at),
                      ends_at=changes.get("ends_at", session.ends_at), exclude=session.id)


async def touch_session(conn: asyncpg.Connection, session_id: uuid.UUID) -> None:
    await conn.execute("UPDATE sessions SET updated_at = now() WHERE id = $1", session_id)


async def cancel_session(conn: asyncpg.Connection, session_id: uuid.UUID) -> bool:
    """scheduled -> cancelled (frees the room); False if already cancelled."""
    status = await conn.execute(
        "UPDATE sessions SET status = 'cancelled', updated_at = now() WHERE id = $1 AND status = 'scheduled'",
        session_id,
    )
    return status == "UPDATE 1"


async def delete_session(conn: asyncpg.Connection, session_id: uuid.UUID) -> bool:
    return await conn.execute("DELETE FROM sessions WHERE id = $1", session_id) == "DELETE 1"


async def sessions_outside(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID, starts_at: datetime,
                           ends_at: datetime) -> list[SessionRow]:
    """Scheduled sessions of the event not inside [starts_at, ends_at]."""
    rows = await conn.fetch(
        f"""SELECT {_SESSION_JSON} AS j FROM sessions s
             WHERE s.event_id = $1 AND s.status = 'scheduled' AND (s.starts_at < $2 OR s.ends_at > $3)
             ORDER BY {_SESSION_ORDER} LIMIT 20""",
        event_id, starts_at, ends_at,
    )
    return [_session(r["j"]) for r in rows]


# --- versions and changes ---------------------------------------------------------------------------

async def bump_version(conn: asyncpg.Connection, event_id: uuid.UUID, count: int) -> EventState:
    """Reserve `count` new versions (the last one is returned) under the event's row lock."""
    row = await conn.fetchrow(
        """UPDATE events SET schedule_version = schedule_version + $2 WHERE id = $1
           RETURNING schedule_version AS version, starts_at, ends_at, status""",
        event_id, count,
    )
    if row is None:
        raise FoyerError("not_found", "event not found")
    return EventState(**dict(row))


async def insert_changes(
    conn: asyncpg.Connection, *, event_id: uuid.UUID, first_version: int, changed_by: uuid.UUID | None,
    changes: list[tuple[str, uuid.UUID, str, list[str], dict[str, Any] | None]],
) -> None:
    """Record changes `(entity, entity_id, op, fields, data)` as versions first_version, +1, ..."""
    await conn.executemany(
        """INSERT INTO schedule_changes (event_id, version, entity, entity_id, op, fields, data, changed_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        [(event_id, first_version + i, entity, entity_id, op, fields, data, changed_by)
         for i, (entity, entity_id, op, fields, data) in enumerate(changes)],
    )


async def changes_since(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID,
                        since: int) -> tuple[int, list[ChangeRow]]:
    """(current version, changes with version > since in order) from one snapshot (one statement)."""
    row = await conn.fetchrow(
        """SELECT e.schedule_version,
                  coalesce((SELECT jsonb_agg(jsonb_build_object(
                                'version', c.version, 'entity', c.entity, 'entity_id', c.entity_id, 'op', c.op,
                                'fields', c.fields, 'data', c.data, 'changed_at', c.changed_at) ORDER BY c.version)
                              FROM schedule_changes c WHERE c.event_id = e.id AND c.version > $2), '[]')
                  AS changes
             FROM events e WHERE e.id = $1""",
        event_id, since,
    )
    if row is None:
        raise FoyerError("not_found", "event not found")
    return row["schedule_version"], msgspec.convert(row["changes"], list[ChangeRow])


async def load_schedule(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID) -> ScheduleSnapshot | None:
    row = await conn.fetchrow(
        f"""SELECT e.schedule_version,
                   jsonb_build_object('id', e.id, 'slug', e.slug, 'title', e.title, 'starts_at', e.starts_at,
                                      'ends_at', e.ends_at, 'timezone', e.timezone, 'venue', e.venue,
                                      'status', e.status) AS event,
                   coalesce((SELECT jsonb_agg({_SESSION_JSON} ORDER BY {_SESSION_ORDER})
                               FROM sessions s WHERE s.event_id = e.id), '[]') AS sessions,
                   coalesce((SELECT jsonb_agg(to_jsonb(p) ORDER BY lower(p.name), p.id)
                               FROM speakers p WHERE p.event_id = e.id), '[]') AS speakers
              FROM events e WHERE e.id = $1""",
        event_id,
    )
    if row is None:
        return None
    return ScheduleSnapshot(
        version=row["schedule_version"], event=row["event"],
        sessions=msgspec.convert(row["sessions"], list[SessionRow]),
        speakers=msgspec.convert(row["speakers"], list[SpeakerRow]),
    )


# --- personal agenda ----------------------------------------------------------------------------------

class AgendaRow(msgspec.Struct, frozen=True, kw_only=True):
    session: SessionRow
    event: dict[str, Any]
    added_at: datetime
    # what the policy needs about the event, and the user's roles on it
    status: str
    owner_id: uuid.UUID
    live_access: str
    published_at: datetime | None
    roles: list[str]

    @property
    def event_id(self) -> uuid.UUID:
        return self.session.event_id

    @property
    def id(self) -> uuid.UUID:
        return self.session.event_id


async def add_agenda_item(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID,
                          session_id: uuid.UUID) -> tuple[bool, datetime]:
    """Bookmark (idempotent); returns (newly added, when it was added)."""
    row = await conn.fetchrow(
        """WITH ins AS (INSERT INTO agenda_items (user_id, session_id) VALUES ($1, $2)
                        ON CONFLICT (user_id, session_id) DO NOTHING RETURNING created_at)
           SELECT true AS added, created_at FROM ins
           UNION ALL
           SELECT false, created_at FROM agenda_items WHERE user_id = $1 AND session_id = $2
           LIMIT 1""",
        user_id, session_id,
    )
    return row["added"], row["created_at"]


async def remove_agenda_item(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID,
                             session_id: uuid.UUID) -> bool:
    status = await conn.execute("DELETE FROM agenda_items WHERE user_id = $1 AND session_id = $2",
                                user_id, session_id)
    return status == "DELETE 1"


async def list_agenda(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID,
                      event_id: uuid.UUID | None = None) -> list[AgendaRow]:
    """The user's bookmarks in session time order, with each event's policy facts (one query)."""
    rows = await conn.fetch(
        f"""SELECT {_SESSION_JSON} AS session, a.created_at AS added_at,
                   jsonb_build_object('id', e.id, 'slug', e.slug, 'title', e.title, 'timezone', e.timezone,
                                      'status', e.status) AS event,
                   e.status, e.owner_id, e.live_access, e.published_at,
                   coalesce(array(SELECT m.role FROM event_members m
                                   WHERE m.event_id = e.id AND m.user_id = $1), '{{}}') AS roles
              FROM agenda_items a
              JOIN sessions s ON s.id = a.session_id
              JOIN events e ON e.id = s.event_id
             WHERE a.user_id = $1 AND ($2::uuid IS NULL OR s.event_id = $2)
             ORDER BY {_SESSION_ORDER}""",
        user_id, event_id,
    )
    return [
        AgendaRow(session=_session(r["session"]), event=r["event"], added_at=r["added_at"], status=r["status"],
                  owner_id=r["owner_id"], live_access=r["live_access"], published_at=r["published_at"],
                  roles=list(r["roles"]))
        for r in rows
    ]
