"""Room names and the join decision (which delegates to domain/policy.py, the one policy place).

Names: `event:{event_id}` (the lobby), `session:{session_id}`, `staff:{event_id}` (organizers,
moderators, scanners), `user:{user_id}` (private: server → that user). Ids are canonical
lowercase UUIDs; anything else is `validation_failed` on field `room`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from domain.errors import FoyerError, field_error, not_found
from domain.identity import Principal
from domain.policy import ROOM_JOIN_ACTIONS, Action, EventAccess, decide, load_access, may_join_user_room
from storage.rooms import session_event_id

KINDS = ("event", "session", "staff", "user")
CHAT_KINDS = ("event", "session", "staff")  # rooms where chat:send & co. work
_NAME = re.compile(r"^([a-z]{2,16}):([0-9a-fA-F-]{32,36})$")
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")

# session id -> event id (immutable once created), to spare a query per staged event
_session_events: dict[uuid.UUID, uuid.UUID] = {}


@dataclass(frozen=True, slots=True)
class RoomName:
    kind: str
    id: uuid.UUID

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.id}"

    def __str__(self) -> str:
        return self.name


def parse_room(value: Any, field: str = "room") -> RoomName:
    if not isinstance(value, str):
        raise field_error(field, "must be a room name such as event:<id>")
    m = _NAME.match(value)
    if not m or (m.group(1) not in KINDS and m.group(1) not in EXTRA_KINDS):
        raise field_error(field, "must be event:<id>, session:<id>, staff:<id> or user:<id>")
    try:
        return RoomName(m.group(1), uuid.UUID(m.group(2)))
    except ValueError:
        raise field_error(field, "the id is not a UUID") from None


def check_event_name(event: str) -> None:
    if not _EVENT_NAME.match(event):
        raise ValueError(f"bad room event name {event!r}: lowercase, [a-z0-9_.:-], at most 64 chars")


async def event_id_of(conn: Any, rn: RoomName) -> uuid.UUID | None:
    """The event a room belongs to (None for user rooms); `not_found` for an unknown session."""
    if rn.kind in ("event", "staff"):
        return rn.id
    if rn.kind == "user":
        return None
    extra = EXTRA_KINDS.get(rn.kind)
    if extra is not None:
        return await extra.event_id(conn, rn.id)
    cached = _session_events.get(rn.id)
    if cached is not None:
        return cached
    event_id = await session_event_id(conn, rn.id)
    if event_id is None:
        raise not_found("room")
    if len(_session_events) > 100_000:
        _session_events.clear()
    _session_events[rn.id] = event_id
    return event_id


@dataclass(frozen=True, slots=True)
class JoinGrant:
    room: RoomName
    event_id: uuid.UUID | None
    can_moderate: bool
    access: EventAccess | None


async def authorize_join(conn: Any, principal: Principal, rn: RoomName) -> JoinGrant:
    """May `principal` join `rn`? Raises `not_found` / `forbidden` (policy) or returns the grant."""
    if rn.kind == "user":
        if not may_join_user_room(principal, rn.id):
            raise not_found("room")
        return JoinGrant(rn, None, False, None)
    extra = EXTRA_KINDS.get(rn.kind)
    if extra is not None:
        return await extra.authorize(conn, principal, rn)
    event_id = await event_id_of(conn, rn)
    assert event_id is not None
    access = await load_access(conn, principal, event_id)
    decide(access, ROOM_JOIN_ACTIONS[rn.kind])
    return JoinGrant(rn, event_id, access.can(Action.MODERATE_LIVE), access)


@dataclass(frozen=True, slots=True)
class RoomKind:
    """A room kind added by a feature (e.g. `dm:` one-to-one rooms, rooms/networking.py)."""

    event_id: Callable[[Any, uuid.UUID], Awaitable[uuid.UUID | None]]  # (conn, id) -> event, or not_found
    authorize: Callable[[Any, Principal, RoomName], Awaitable[JoinGrant]]  # the join decision


EXTRA_KINDS: dict[str, RoomKind] = {}


def register_kind(kind: str, *, event_id: Callable[[Any, uuid.UUID], Awaitable[uuid.UUID | None]],
                  authorize: Callable[[Any, Principal, RoomName], Awaitable[JoinGrant]]) -> None:
    """Extension point: a new room kind `<kind>:<uuid>` whose event and join rights the feature
    decides. Chat events other than `chat:history` are refused there (not in CHAT_KINDS)."""
    if kind in KINDS or not re.fullmatch(r"[a-z]{2,16}", kind):
        raise ValueError(f"bad room kind {kind!r}")
    EXTRA_KINDS[kind] = RoomKind(event_id, authorize)


def require_moderator(can_moderate: bool) -> None:
    if not can_moderate:
        raise FoyerError("forbidden", f"your role on this event does not allow {Action.MODERATE_LIVE.value}")
