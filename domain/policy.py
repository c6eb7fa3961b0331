"""The one place that decides "may this user do X on this event".

Every HTTP handler and socket event that touches an event calls `authorize` (or `decide` on an
`EventAccess` it already loaded). The table below is the whole policy; tests walk it role by
role (tests/domain/test_policy.py) and over HTTP.

Rules beyond the table:
- Existence is not leaked: a caller who may not even *view* an event gets `not_found`, never
  `forbidden`, whether the event exists or not (OWASP API1, broken object-level authorization).
- Organizers and admins must have 2FA enabled (`require_2fa_for_staff`) for the actions in
  `TWO_FACTOR_ACTIONS` (publishing, attendee/revenue/analytics data): `two_factor_required`.
- Live-room access for attendees depends on the event's `live_access` setting.
- Admins may do everything, subject to the 2FA rule.
- The owner (creator) of an event is an organizer with three more rights (`OWNER_ONLY`):
  deleting a draft, cancelling a published event, and adding/removing co-organizers.
  Co-organizers are organizers without those three.
- Global actions (not about one event, e.g. creating an event) are decided by
  `authorize_global` from `GLOBAL_ACTIONS`.
- Public listings show published events only; `visible_to_public` says which rows qualify and
  `filter_visible` runs every listed row through `decide(VIEW_EVENT)`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.errors import FoyerError, not_found
from domain.identity import Principal
from storage.access import load_event_access


class Role(StrEnum):
    ORGANIZER = "organizer"
    MODERATOR = "moderator"
    STAFF = "staff"  # door scanners
    ATTENDEE = "attendee"  # holds a confirmed ticket


class Action(StrEnum):
    # global (not about one event): decided by `authorize_global`
    CREATE_EVENT = "event.create"
    # events and schedule
    VIEW_EVENT = "event.view"
    UPDATE_EVENT = "event.update"
    DELETE_EVENT = "event.delete"
    PUBLISH_EVENT = "event.publish"
    CANCEL_EVENT = "event.cancel"
    MANAGE_ORGANIZERS = "event.manage_organizers"
    MANAGE_TEAM = "event.manage_team"  # moderators and staff
    VIEW_TEAM = "event.view_team"
    EDIT_SCHEDULE = "schedule.edit"
    BOOKMARK_SESSION = "agenda.bookmark"  # personal agenda: any signed-in user who can view the event
    # ticketing
    MANAGE_TICKETS = "tickets.manage"
    BUY_TICKETS = "tickets.buy"
    VIEW_ORDERS = "orders.view_all"
    REFUND_ORDERS = "orders.refund"
    VIEW_ATTENDEES = "attendees.view"
    VIEW_REVENUE = "revenue.view"
    CHECK_IN = "checkin.scan"
    VIEW_CHECKINS = "checkin.view"
    MANAGE_QUEUE = "queue.manage"
    # live rooms
    JOIN_LIVE = "live.join"
    JOIN_STAFF_ROOM = "live.join_staff"
    MODERATE_LIVE = "live.moderate"
    ANNOUNCE = "live.announce"
    MODERATE_QA = "qa.moderate"  # approve/dismiss/answer/pin questions, Q&A settings
    VIEW_QA_AUDIT = "qa.audit"  # read the Q&A moderation audit trail (organizers)
    MANAGE_POLLS = "polls.manage"  # create, edit, open, close polls; see results of hidden polls
    USE_NETWORKING = "networking.use"  # the attendee directory, connection requests, 1:1 chat
    # reach
    VIEW_ANALYTICS = "analytics.view"
    SEND_FEEDBACK = "feedback.send"


_STAFF_ROLES = frozenset({Role.ORGANIZER, Role.MODERATOR, Role.STAFF})
OWNER = "owner"  # pseudo-role: the event's creator (events.owner_id), also stored as an organizer

# Rights of the owner that co-organizers do not have.
OWNER_ONLY: frozenset[Action] = frozenset({Action.DELETE_EVENT, Action.CANCEL_EVENT, Action.MANAGE_ORGANIZERS})
# Global actions are not granted per event.
GLOBAL_ONLY: frozenset[Action] = frozenset({Action.CREATE_EVENT})

# Actions a role grants on a *visible* event. Admins are handled separately (everything).
ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    OWNER: frozenset(Action) - GLOBAL_ONLY,
    Role.ORGANIZER: frozenset(Action) - GLOBAL_ONLY - OWNER_ONLY,
    Role.MODERATOR: frozenset(
        {Action.VIEW_EVENT, Action.VIEW_TEAM, Action.CHECK_IN, Action.VIEW_CHECKINS, Action.JOIN_LIVE,
         Action.JOIN_STAFF_ROOM, Action.MODERATE_LIVE, Action.BUY_TICKETS, Action.MODERATE_QA,
         Action.MANAGE_POLLS, Action.USE_NETWORKING}
    ),
    Role.STAFF: frozenset(
        {Action.VIEW_EVENT, Action.CHECK_IN, Action.VIEW_CHECKINS, Action.JOIN_LIVE,
         Action.JOIN_STAFF_ROOM, Action.BUY_TICKETS, Action.USE_NETWORKING}
    ),
    Role.ATTENDEE: frozenset({Action.VIEW_EVENT, Action.BUY_TICKETS, Action.JOIN_LIVE, Action.SEND_FEEDBACK,
                              Action.USE_NETWORKING}),
    # any signed-in user, no role on the event
    "user": frozenset({Action.VIEW_EVENT, Action.BUY_TICKETS, Action.BOOKMARK_SESSION}),
    # not signed in
    "anonymous": frozenset({Action.VIEW_EVENT}),
}

# Global actions per global role ("anonymous" = not signed in).
GLOBAL_ACTIONS: dict[str, frozenset[Action]] = {
    "anonymous": frozenset(),
    "user": frozenset({Action.CREATE_EVENT}),
    "admin": frozenset({Action.CREATE_EVENT}),
}

TWO_FACTOR_ACTIONS: frozenset[Action] = frozenset(
    {Action.PUBLISH_EVENT, Action.VIEW_ATTENDEES, Action.VIEW_REVENUE, Action.VIEW_ANALYTICS,
     Action.VIEW_ORDERS, Action.REFUND_ORDERS}
)

# Actions that only make sense on a published (on sale / live) event.
_PUBLISHED_ONLY: frozenset[Action] = frozenset({Action.BUY_TICKETS, Action.SEND_FEEDBACK})


@dataclass(frozen=True, slots=True)
class EventAccess:
    """What the policy knows about one caller and one event."""

    event_id: uuid.UUID
    user_id: uuid.UUID | None
    status: str
    owner_id: uuid.UUID
    live_access: str
    published_at: datetime | None
    roles: frozenset[str]
    is_admin: bool
    totp_enabled: bool
    require_2fa: bool = True
    schedule_version: int = 0

    @property
    def is_owner(self) -> bool:
        return self.user_id is not None and self.user_id == self.owner_id

    @property
    def is_staff(self) -> bool:
        """Owner, organizer, moderator or scanner on this event, or an admin."""
        return self.is_admin or self.is_owner or bool(self.roles & _STAFF_ROLES)

    @property
    def publicly_visible(self) -> bool:
        return visible_to_public(self.status, self.published_at)

    def granted(self) -> frozenset[Action]:
        """Every action the table grants, before the 2FA and state rules."""
        if self.is_admin:
            return frozenset(Action) - GLOBAL_ONLY
        granted: set[Action] = set(ROLE_ACTIONS["user" if self.user_id else "anonymous"])
        if self.is_owner:
            granted |= ROLE_ACTIONS[OWNER]
        for role in self.roles:
            granted |= ROLE_ACTIONS.get(role, frozenset())
        if Action.JOIN_LIVE in granted and not self._may_join_live():
            granted.discard(Action.JOIN_LIVE)
        if self.user_id and self.live_access == "public":
            granted.add(Action.JOIN_LIVE)
        return frozenset(granted)

    def _may_join_live(self) -> bool:
        if self.is_staff:
            return True
        if self.live_access == "staff":
            return False
        return Role.ATTENDEE in self.roles or self.live_access == "public"

    def can(self, action: Action) -> bool:
        try:
            decide(self, action)
        except FoyerError:
            return False
        return True


def decide(access: EventAccess, action: Action, *, subject: str = "event") -> None:
    """Raise `not_found`, `forbidden`, `two_factor_required` or `invalid_state`, or return None.

    `subject` names what the caller asked for in the `not_found` message ("session", ...), so
    asking for a child of an invisible event reads exactly like asking for a missing one."""
    granted = access.granted()
    visible = access.publicly_visible or access.is_staff
    if not visible:
        raise not_found(subject)
    if action not in granted:
        raise FoyerError("forbidden", f"your role on this event does not allow {action.value}")
    if action in TWO_FACTOR_ACTIONS and access.require_2fa and not access.totp_enabled:
        raise FoyerError(
            "two_factor_required", "enable two-factor authentication before doing this",
            details={"action": action.value},
        )
    if action in _PUBLISHED_ONLY and access.status != "published":
        raise FoyerError("invalid_state", f"the event is {access.status}")


def access_from_row(
    row: dict[str, Any], *, event_id: uuid.UUID, principal: Principal | None, require_2fa: bool = True
) -> EventAccess:
    return EventAccess(
        event_id=event_id,
        user_id=principal.user_id if principal else None,
        status=row["status"],
        owner_id=row["owner_id"],
        live_access=row["live_access"],
        published_at=row["published_at"],
        roles=frozenset(row["roles"] or ()),
        # The database's current role, not the token's claim: a revoked admin loses rights at once.
        is_admin=bool(principal) and row.get("user_role", principal.role if principal else None) == "admin",
        totp_enabled=bool(row["totp_enabled"]),
        require_2fa=require_2fa,
        schedule_version=row.get("schedule_version", 0),
    )


async def load_access(
    conn: Any, principal: Principal | None, event_id: uuid.UUID, *, require_2fa: bool = True,
    subject: str = "event",
) -> EventAccess:
    """Load what the policy needs (one query); `not_found` if the event does not exist."""
    row = await load_event_access(conn, event_id, principal.user_id if principal else None)
    if row is not None and principal is not None and not row["user_active"]:
        raise FoyerError("invalid_token", "this account is disabled or no longer exists")
    if row is None:
        raise not_found(subject)
    return access_from_row(row, event_id=event_id, principal=principal, require_2fa=require_2fa)


async def authorize(
    conn: Any, principal: Principal | None, action: Action, event_id: uuid.UUID, *, require_2fa: bool = True,
    subject: str = "event",
) -> EventAccess:
    """Load access for (principal, event) and decide `action`; returns the access for reuse.

    `subject` is what the caller addressed (an event, or a session/speaker of it) for the
    `not_found` message."""
    access = await load_access(conn, principal, event_id, require_2fa=require_2fa, subject=subject)
    decide(access, action, subject=subject)
    return access


def authorize_global(principal: Principal | None, action: Action) -> Principal:
    """Decide an action that is not about one event (e.g. creating an event)."""
    if action not in GLOBAL_ONLY:
        raise ValueError(f"{action} is decided per event: use authorize()")
    if principal is None:
        raise FoyerError("unauthorized", "sign in first")
    if action not in GLOBAL_ACTIONS["admin" if principal.is_admin else "user"]:
        raise FoyerError("forbidden", f"you may not do {action.value}")
    return principal


def visible_to_public(status: str, published_at: datetime | None) -> bool:
    """Whether an event is visible to callers without a role on it (listings, share pages)."""
    return status == "published" or (status == "cancelled" and published_at is not None)


def filter_visible(
    rows: list[Any], principal: Principal | None, *, roles_of: Any = None, require_2fa: bool = True
) -> list[tuple[Any, EventAccess]]:
    """Keep the rows (objects with event_id/id, status, owner_id, live_access, published_at) the
    caller may view, each with its `EventAccess`; `roles_of(row)` gives the caller's roles on that
    row's event (default: none). `totp_enabled` is unknown here (False): decide only actions that
    are not 2FA-gated with these accesses."""
    kept = []
    for row in rows:
        access = EventAccess(
            event_id=getattr(row, "event_id", None) or row.id,
            user_id=principal.user_id if principal else None,
            status=row.status, owner_id=row.owner_id, live_access=row.live_access,
            published_at=row.published_at, roles=frozenset(roles_of(row) if roles_of else ()),
            is_admin=bool(principal and principal.is_admin), totp_enabled=False, require_2fa=require_2fa,
        )
        if access.can(Action.VIEW_EVENT):
            kept.append((row, access))
    return kept


# Live rooms (rooms/names.py): which action joining a room of each kind needs on its event.
# `user:{id}` rooms are private: only that user may join them (`may_join_user_room`).
# Moderating a room (delete any message, mute, ban, slow mode) needs MODERATE_LIVE on its event.
ROOM_JOIN_ACTIONS: dict[str, Action] = {
    "event": Action.JOIN_LIVE,
    "session": Action.JOIN_LIVE,
    "staff": Action.JOIN_STAFF_ROOM,
}


def may_join_user_room(principal: Principal | None, user_id: uuid.UUID) -> bool:
    return principal is not None and principal.user_id == user_id


def require_admin(principal: Principal | None) -> Principal:
    if principal is None:
        raise FoyerError("unauthorized", "sign in first")
    if not principal.is_admin:
        raise FoyerError("forbidden", "admins only")
    return principal
