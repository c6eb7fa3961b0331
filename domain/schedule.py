"""Sessions of an event and reading its schedule (full, or as a delta since a version).

Writes (organizers and admins: `EDIT_SCHEDULE`; not on cancelled events) are one transaction
each: authorize, validate, write, `record_changes` (version bump + change rows +
`schedule.changed`) and the session fact, committed together.

Room conflicts: a new/moved session that overlaps a scheduled session in the same room answers
409 `schedule_conflict` naming the session(s) holding the slot. It is checked first (clear
message) and guaranteed by the `sessions_no_room_overlap` exclusion constraint, which also
settles two concurrent writers (the loser gets the same error). A session must lie within its
event; that is re-checked under the event's row lock when the version is bumped, so a concurrent
change of the event's times cannot leave a session outside.

Outbox facts (besides `schedule.changed`):
- `session.changed` `{event_id, session_id, op: created|updated|deleted, fields, session}`
- `session.cancelled` `{event_id, session_id, session}`
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec

from domain import event_input as rules
from domain.changes import Change, ScheduleEvent, record_changes
from domain.errors import FoyerError, not_found, validation_failed
from domain.event_input import Problems, SessionCreate, SessionPatch
from domain.identity import Principal
from domain.policy import Action, EventAccess, authorize
from domain.services import Core
from storage import events as event_store
from storage import outbox
from storage import schedule as store
from storage import speakers as speaker_store
from storage.events import EventRow
from storage.schedule import ChangeRow, EventState, SessionRow
from storage.speakers import SpeakerRow

SessionOut = SessionRow  # the API shape of a session is its stored snapshot


class ScheduleOut(msgspec.Struct, kw_only=True):
    event_id: uuid.UUID
    version: int
    event: ScheduleEvent
    sessions: list[SessionRow]
    speakers: list[SpeakerRow]


class ScheduleDeltaOut(msgspec.Struct, kw_only=True):
    event_id: uuid.UUID
    version: int
    since: int
    changes: list[ChangeRow]


class ScheduleQuery(msgspec.Struct, forbid_unknown_fields=True):
    since: Annotated[int, msgspec.Meta(ge=0)] | None = None


class NotModified(msgspec.Struct, kw_only=True):
    etag: str


def require_2fa(core: Core) -> bool:
    return core.settings.auth.require_2fa_for_staff


async def authorize_edit(core: Core, conn: asyncpg.Connection, principal: Principal,
                         event_id: uuid.UUID, subject: str = "event") -> tuple[EventAccess, EventRow]:
    """EDIT_SCHEDULE on the event, which must not be cancelled; returns the access and the row."""
    access = await authorize(conn, principal, Action.EDIT_SCHEDULE, event_id, require_2fa=require_2fa(core),
                             subject=subject)
    event = await event_store.get_event(conn, event_id)
    if event is None:
        raise not_found("event")
    if event.status == "cancelled":
        raise FoyerError("invalid_state", "the event is cancelled; its schedule can no longer change")
    return access, event


def editable_guard(check: Callable[[EventState], None] | None = None) -> Callable[[EventState], None]:
    """Guard for `record_changes`: the event was not cancelled meanwhile, plus `check`."""
    def guard(state: EventState) -> None:
        if state.status == "cancelled":
            raise FoyerError("invalid_state", "the event was cancelled meanwhile; its schedule can no longer change")
        if check is not None:
            check(state)
    return guard


def within_event_guard(starts_at: datetime, ends_at: datetime) -> Callable[[EventState], None]:
    def check(state: EventState) -> None:
        if starts_at < state.starts_at or ends_at > state.ends_at:
            raise _outside_error(state.starts_at, state.ends_at)
    return editable_guard(check)


def _outside_error(event_start: datetime, event_end: datetime) -> FoyerError:
    message = f"must be within the event ({store.iso(event_start)} – {store.iso(event_end)})"
    return validation_failed([{"field": "starts_at", "message": message},
                                    {"field": "ends_at", "message": message}])


async def _check_speakers(conn: asyncpg.Connection, event_id: uuid.UUID, ids: list[uuid.UUID],
                          p: Problems) -> list[uuid.UUID]:
    ids = rules.unique_ids(ids, "speaker_ids", p)
    for bad in await speaker_store.foreign_speakers(conn, event_id, ids):
        p.add(f"speaker_ids.{ids.index(bad)}", "not a speaker of this event")
    return ids


async def _session_fact(conn: asyncpg.Connection, session: SessionRow, op: str, fields: tuple[str, ...] = ()) -> None:
    await outbox.append(conn, type="session.changed", event_id=session.event_id, data={
        "event_id": str(session.event_id), "session_id": str(session.id), "op": op, "fields": list(fields),
        "session": msgspec.to_builtins(session),
    })


async def _load_for_edit(core: Core, conn: asyncpg.Connection, principal: Principal,
                         session_id: uuid.UUID) -> tuple[SessionRow, EventRow]:
    found = await store.get_session(conn, session_id)
    if found is None:
        raise not_found("session")
    _, event = await authorize_edit(core, conn, principal, found.event_id, "session")
    session = await store.get_session(conn, session_id, for_update=True)
    if session is None:
        raise not_found("session")
    return session, event


# --- writes ----------------------------------------------------------------------------------------------

async def create_session(core: Core, principal: Principal, event_id: uuid.UUID, body: SessionCreate) -> SessionRow:
    async with core.db.transaction("session_create") as conn:
        _, event = await authorize_edit(core, conn, principal, event_id)
        p = Problems()
        title = rules.clean_line(body.title, "title", p, required=True)
        abstract = rules.clean_text(body.abstract, "abstract", p)
        room = rules.clean_line(body.room, "room", p)
        track = rules.clean_line(body.track, "track", p)
        starts_at, ends_at = rules.utc(body.starts_at), rules.utc(body.ends_at)
        rules.check_range(starts_at, ends_at, p)
        speaker_ids = await _check_speakers(conn, event_id, body.speaker_ids, p)
        p.raise_if_any()
        if starts_at < event.starts_at or ends_at > event.ends_at:
            raise _outside_error(event.starts_at, event.ends_at)
        conflicts = await store.room_conflicts(conn, event_id=event_id, room=room, starts_at=starts_at,
                                               ends_at=ends_at)
        if conflicts:
            raise store.conflict_error(room, conflicts)
        session_id = await store.insert_session(conn, event_id=event_id, title=title, abstract=abstract,
                                                starts_at=starts_at, ends_at=ends_at, room=room, track=track,
                                                capacity=body.capacity)
        await speaker_store.set_session_speakers(conn, session_id, speaker_ids)
        session = await store.get_session(conn, session_id)
        assert session is not None
        await record_changes(conn, event_id=event_id, actor_id=principal.user_id,
                             changes=[Change("session", session.id, "created", session)],
                             guard=within_event_guard(starts_at, ends_at))
        await _session_fact(conn, session, "created")
    return session


def _session_changes(session: SessionRow, patch: SessionPatch, p: Problems) -> dict[str, Any]:
    wanted: dict[str, Any] = {}
    if patch.title is not msgspec.UNSET:
        wanted["title"] = rules.clean_line(patch.title, "title", p, required=True)
    if patch.abstract is not msgspec.UNSET:
        wanted["abstract"] = rules.clean_text(patch.abstract, "abstract", p)
    if patch.room is not msgspec.UNSET:
        wanted["room"] = rules.clean_line(patch.room, "room", p)
    if patch.track is not msgspec.UNSET:
        wanted["track"] = rules.clean_line(patch.track, "track", p)
    if patch.capacity is not msgspec.UNSET:
        wanted["capacity"] = patch.capacity
    if patch.starts_at is not msgspec.UNSET:
        wanted["starts_at"] = rules.utc(patch.starts_at)
    if patch.ends_at is not msgspec.UNSET:
        wanted["ends_at"] = rules.utc(patch.ends_at)
    if "starts_at" in wanted or "ends_at" in wanted:
        rules.check_range(wanted.get("starts_at", session.starts_at), wanted.get("ends_at", session.ends_at), p)
    return {k: v for k, v in wanted.items() if getattr(session, k) != v}


async def update_session(core: Core, principal: Principal, session_id: uuid.UUID, patch: SessionPatch) -> SessionRow:
    async with core.db.transaction("session_update") as conn:
        session, event = await _load_for_edit(core, conn, principal, session_id)
        p = Problems()
        changes = _session_changes(session, patch, p)
        speaker_ids = None
        if patch.speaker_ids is not msgspec.UNSET:
            speaker_ids = await _check_speakers(conn, session.event_id, patch.speaker_ids, p)
            if speaker_ids == session.speaker_ids:
                speaker_ids = None
        p.raise_if_any()
        if not changes and speaker_ids is None:
            return session
        starts_at = changes.get("starts_at", session.starts_at)
        ends_at = changes.get("ends_at", session.ends_at)
        if "starts_at" in changes or "ends_at" in changes:
            if starts_at < event.starts_at or ends_at > event.ends_at:
                raise _outside_error(event.starts_at, event.ends_at)
        room = changes.get("room", session.room)
        if session.status == "scheduled" and {"starts_at", "ends_at", "room"} & changes.keys():
            conflicts = await store.room_conflicts(conn, event_id=session.event_id, room=room, starts_at=starts_at,
                                                   ends_at=ends_at, exclude=session.id)
            if conflicts:
                raise store.conflict_error(room, conflicts)
        await store.update_session(conn, session, changes)
        if speaker_ids is not None:
            await speaker_store.set_session_speakers(conn, session.id, speaker_ids)
            if not changes:
                await store.touch_session(conn, session.id)
        updated = await store.get_session(conn, session.id)
        assert updated is not None
        fields = tuple(sorted(changes)) + (("speaker_ids",) if speaker_ids is not None else ())
        await record_changes(conn, event_id=session.event_id, actor_id=principal.user_id,
                             changes=[Change("session", session.id, "updated", updated, fields)],
                             guard=within_event_guard(starts_at, ends_at) if session.status == "scheduled"
                             else editable_guard())
        await _session_fact(conn, updated, "updated", fields)
    return updated


async def cancel_session(core: Core, principal: Principal, session_id: uuid.UUID) -> SessionRow:
    """scheduled -> cancelled: stays in the schedule (marked), frees its room, keeps bookmarks."""
    async with core.db.transaction("session_cancel") as conn:
        session, _ = await _load_for_edit(core, conn, principal, session_id)
        if not await store.cancel_session(conn, session.id):
            raise FoyerError("invalid_state", "the session is already cancelled")
        updated = await store.get_session(conn, session.id)
        assert updated is not None
        await record_changes(conn, event_id=session.event_id, actor_id=principal.user_id,
                             changes=[Change("session", session.id, "updated", updated, ("status",))],
                             guard=editable_guard())
        await outbox.append(conn, type="session.cancelled", event_id=session.event_id, data={
            "event_id": str(session.event_id), "session_id": str(session.id),
            "session": msgspec.to_builtins(updated),
        })
    return updated


async def delete_session(core: Core, principal: Principal, session_id: uuid.UUID) -> None:
    """Remove a session (and everyone's bookmarks of it). Prefer cancelling a published one."""
    async with core.db.transaction("session_delete") as conn:
        session, _ = await _load_for_edit(core, conn, principal, session_id)
        await store.delete_session(conn, session.id)
        await record_changes(conn, event_id=session.event_id, actor_id=principal.user_id,
                             changes=[Change("session", session.id, "deleted")], guard=editable_guard())
        await _session_fact(conn, session, "deleted")


async def assign_speaker(core: Core, principal: Principal, session_id: uuid.UUID, speaker_id: uuid.UUID, *,
                         assign: bool) -> SessionRow:
    """Add the speaker at the end of the session's list (or remove it); idempotent."""
    async with core.db.transaction("session_speaker") as conn:
        session, _ = await _load_for_edit(core, conn, principal, session_id)
        speaker = await speaker_store.get_speaker(conn, speaker_id)
        if speaker is None or speaker.event_id != session.event_id:
            raise not_found("speaker")
        if assign:
            changed = await speaker_store.add_session_speaker(conn, session.id, speaker_id)
        else:
            changed = await speaker_store.remove_session_speaker(conn, session.id, speaker_id)
        if not changed:
            return session
        await store.touch_session(conn, session.id)
        updated = await store.get_session(conn, session.id)
        assert updated is not None
        await record_changes(conn, event_id=session.event_id, actor_id=principal.user_id,
                             changes=[Change("session", session.id, "updated", updated, ("speaker_ids",))],
                             guard=editable_guard())
        await _session_fact(conn, updated, "updated", ("speaker_ids",))
    return updated


# --- reads ------------------------------------------------------------------------------------------------

async def get_session(core: Core, principal: Principal | None, session_id: uuid.UUID) -> SessionRow:
    async with core.db.connection() as conn:
        session = await store.get_session(conn, session_id)
        if session is None:
            raise not_found("session")
        await authorize(conn, principal, Action.VIEW_EVENT, session.event_id, require_2fa=require_2fa(core),
                        subject="session")
    return session


def schedule_etag(event_id: uuid.UUID, version: int, since: int | None) -> str:
    """Strong validator of one representation: the full schedule, or the delta since `since`."""
    suffix = "" if since is None else f"-since-{since}"
    return f'"{event_id.hex}-v{version}{suffix}"'


async def get_schedule(
    core: Core, principal: Principal | None, event_id: uuid.UUID, *, since: int | None,
    not_modified: Callable[[str], bool],
) -> tuple[str, ScheduleOut | ScheduleDeltaOut | NotModified]:
    """The schedule (or the delta since a version) and its ETag; `NotModified` when the caller's
    validator still matches. Authorization comes first, so a 304 never reveals anything.
    Two queries: access (with the current version), then one snapshot statement."""
    async with core.db.connection() as conn:
        access = await authorize(conn, principal, Action.VIEW_EVENT, event_id, require_2fa=require_2fa(core))
        if since is not None and since > access.schedule_version:
            raise validation_failed([{"field": "since", "message":
                                            f"is ahead of the schedule (version {access.schedule_version})"}])
        etag = schedule_etag(event_id, access.schedule_version, since)
        if not_modified(etag):
            return etag, NotModified(etag=etag)
        if since is not None:
            version, changes = await store.changes_since(conn, event_id, since)
            return (schedule_etag(event_id, version, since),
                    ScheduleDeltaOut(event_id=event_id, version=version, since=since, changes=changes))
        snap = await store.load_schedule(conn, event_id)
    if snap is None:
        raise not_found("event")
    return (schedule_etag(event_id, snap.version, None),
            ScheduleOut(event_id=event_id, version=snap.version, event=msgspec.convert(snap.event, ScheduleEvent),
                        sessions=snap.sessions, speakers=snap.speakers))
