"""An event's team: co-organizers, moderators and staff (door scanners).

Rules (decided by `domain.policy`): co-organizers are added/removed by the owner or an admin
(`MANAGE_ORGANIZERS`); moderators and staff by any organizer (`MANAGE_TEAM`); the team list is
visible to organizers and moderators (`VIEW_TEAM`), e-mail addresses only to those who manage
the team. The owner's organizer role cannot be removed. Attendee membership is not managed here:
ticketing grants it with `storage.events.add_member(conn, event_id=, user_id=, role="attendee")`.

Outbox facts: `event.member_added` / `event.member_removed` `{event_id, user_id, role}` (the live
rooms use them to grant or revoke staff rights in `event:{id}` rooms at once).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from domain.errors import FoyerError, field_error
from domain.event_input import TeamRole
from domain.identity import Principal
from domain.policy import Action, authorize
from domain.services import Core
from storage import events as event_store
from storage import outbox

_ACTION_FOR_ROLE = {"organizer": Action.MANAGE_ORGANIZERS, "moderator": Action.MANAGE_TEAM,
                    "staff": Action.MANAGE_TEAM}


class AddMemberBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: uuid.UUID


class MemberOut(msgspec.Struct, kw_only=True):
    user_id: uuid.UUID
    name: str
    role: str
    added_by: uuid.UUID | None
    added_at: datetime
    is_owner: bool
    email: str | UnsetType = UNSET


class TeamOut(msgspec.Struct, kw_only=True):
    event_id: uuid.UUID
    owner_id: uuid.UUID
    members: list[MemberOut]


def _out(row: event_store.MemberRow, owner_id: uuid.UUID, *, with_email: bool) -> MemberOut:
    out = MemberOut(user_id=row.user_id, name=row.name, role=row.role, added_by=row.added_by,
                    added_at=row.created_at, is_owner=row.user_id == owner_id and row.role == "organizer")
    if with_email:
        out.email = row.email
    return out


def _require_2fa(core: Core) -> bool:
    return core.settings.auth.require_2fa_for_staff


async def add_member(core: Core, principal: Principal, event_id: uuid.UUID, user_id: uuid.UUID,
                     role: TeamRole) -> tuple[MemberOut, bool]:
    """Grant a team role; idempotent. Returns (member, newly added)."""
    async with core.db.transaction("team_add") as conn:
        access = await authorize(conn, principal, _ACTION_FOR_ROLE[role], event_id, require_2fa=_require_2fa(core))
        if not await event_store.active_user_exists(conn, user_id):
            raise field_error("user_id", "no active user has this id")
        added = await event_store.add_member(conn, event_id=event_id, user_id=user_id, role=role,
                                             added_by=principal.user_id)
        member = await event_store.get_member(conn, event_id=event_id, user_id=user_id, role=role)
        assert member is not None
        if added:
            await outbox.append(conn, type="event.member_added", event_id=event_id,
                                data={"event_id": str(event_id), "user_id": str(user_id), "role": role})
    return _out(member, access.owner_id, with_email=True), added


async def remove_member(core: Core, principal: Principal, event_id: uuid.UUID, user_id: uuid.UUID,
                        role: str) -> None:
    if role not in _ACTION_FOR_ROLE:
        raise field_error("role", "must be organizer, moderator or staff (attendance comes with a ticket)")
    async with core.db.transaction("team_remove") as conn:
        access = await authorize(conn, principal, _ACTION_FOR_ROLE[role], event_id, require_2fa=_require_2fa(core))
        if role == "organizer" and user_id == access.owner_id:
            raise FoyerError("invalid_state", "the owner cannot be removed from the event's organizers")
        if not await event_store.remove_member(conn, event_id=event_id, user_id=user_id, role=role):
            raise FoyerError("not_found", f"this user is not {role} of the event")
        await outbox.append(conn, type="event.member_removed", event_id=event_id,
                            data={"event_id": str(event_id), "user_id": str(user_id), "role": role})


async def list_team(core: Core, principal: Principal | None, event_id: uuid.UUID) -> TeamOut:
    async with core.db.connection() as conn:
        access = await authorize(conn, principal, Action.VIEW_TEAM, event_id, require_2fa=_require_2fa(core))
        rows = await event_store.list_team(conn, event_id)
    with_email = access.can(Action.MANAGE_TEAM)
    return TeamOut(event_id=event_id, owner_id=access.owner_id,
                   members=[_out(r, access.owner_id, with_email=with_email) for r in rows])


__all__: list[Any] = ["AddMemberBody", "MemberOut", "TeamOut", "add_member", "list_team", "remove_member"]
