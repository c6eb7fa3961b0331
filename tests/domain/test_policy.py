"""The policy table, decided without I/O: every role × every action × event state."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from domain.errors import FoyerError
from domain.identity import Principal
from domain.policy import (
    GLOBAL_ONLY,
    OWNER_ONLY,
    ROLE_ACTIONS,
    TWO_FACTOR_ACTIONS,
    Action,
    EventAccess,
    Role,
    authorize_global,
    decide,
    filter_visible,
)

OWNER_ID = uuid.uuid4()
EVENT_ID = uuid.uuid4()
EVENT_ACTIONS = [a for a in Action if a not in GLOBAL_ONLY]


def access(who: str, *, status: str = "published", totp: bool = True, live_access: str = "ticket_holders",
           require_2fa: bool = True) -> EventAccess:
    user_id = {"owner": OWNER_ID, "anonymous": None}.get(who, uuid.uuid4())
    roles = {"owner": {"organizer"}, "co": {"organizer"}, "moderator": {"moderator"}, "staff": {"staff"},
             "attendee": {"attendee"}}.get(who, set())
    return EventAccess(
        event_id=EVENT_ID, user_id=user_id, status=status, owner_id=OWNER_ID, live_access=live_access,
        published_at=datetime(2030, 1, 1, tzinfo=UTC) if status != "draft" else None, roles=frozenset(roles),
        is_admin=who == "admin", totp_enabled=totp, require_2fa=require_2fa,
    )


def outcome(acc: EventAccess, action: Action) -> str:
    try:
        decide(acc, action)
    except FoyerError as exc:
        return exc.code
    return "ok"


def expected(who: str, action: Action, status: str) -> str:
    """The table, restated from the rules in docs/schedule.md (independently of ROLE_ACTIONS)."""
    team = who in ("owner", "co", "moderator", "staff", "admin")
    if status == "draft" and not team:
        return "not_found"
    everyone = {Action.VIEW_EVENT}
    signed_in = everyone | {Action.BUY_TICKETS, Action.BOOKMARK_SESSION}
    grants = {
        "anonymous": everyone,
        "stranger": signed_in,
        "attendee": signed_in | {Action.SEND_FEEDBACK, Action.JOIN_LIVE, Action.USE_NETWORKING},
        "staff": signed_in | {Action.CHECK_IN, Action.VIEW_CHECKINS, Action.JOIN_LIVE, Action.JOIN_STAFF_ROOM,
                              Action.USE_NETWORKING},
        "moderator": signed_in | {Action.VIEW_TEAM, Action.CHECK_IN, Action.VIEW_CHECKINS, Action.JOIN_LIVE,
                                  Action.JOIN_STAFF_ROOM, Action.MODERATE_LIVE, Action.MODERATE_QA,
                                  Action.MANAGE_POLLS, Action.USE_NETWORKING},
        "co": set(EVENT_ACTIONS) - {Action.DELETE_EVENT, Action.CANCEL_EVENT, Action.MANAGE_ORGANIZERS},
        "owner": set(EVENT_ACTIONS),
        "admin": set(EVENT_ACTIONS),
    }[who]
    if action not in grants:
        return "forbidden"
    if action in (Action.BUY_TICKETS, Action.SEND_FEEDBACK) and status != "published":
        return "invalid_state"
    return "ok"


@pytest.mark.parametrize("status", ["published", "draft", "cancelled"])
@pytest.mark.parametrize("who", ["owner", "co", "moderator", "staff", "attendee", "stranger", "anonymous", "admin"])
def test_table(who: str, status: str) -> None:
    acc = access(who, status=status)
    got = {a: outcome(acc, a) for a in EVENT_ACTIONS}
    want = {a: expected(who, a, status) for a in EVENT_ACTIONS}
    assert got == want


@pytest.mark.parametrize("who", ["owner", "co", "admin"])
def test_two_factor_actions_need_2fa(who: str) -> None:
    without = access(who, totp=False)
    for action in EVENT_ACTIONS:
        want = "two_factor_required" if action in TWO_FACTOR_ACTIONS else outcome(access(who), action)
        assert outcome(without, action) == want, action
    relaxed = access(who, totp=False, require_2fa=False)
    assert outcome(relaxed, Action.PUBLISH_EVENT) == "ok"


def test_owner_only_and_global_actions() -> None:
    assert OWNER_ONLY <= ROLE_ACTIONS["owner"] and not OWNER_ONLY & ROLE_ACTIONS[Role.ORGANIZER]
    assert not GLOBAL_ONLY & ROLE_ACTIONS["owner"]
    assert authorize_global(Principal(uuid.uuid4()), Action.CREATE_EVENT)
    with pytest.raises(FoyerError) as caught:
        authorize_global(None, Action.CREATE_EVENT)
    assert caught.value.code == "unauthorized"
    with pytest.raises(ValueError):
        authorize_global(Principal(uuid.uuid4()), Action.VIEW_EVENT)


@pytest.mark.parametrize(("live_access", "who", "joins"), [
    ("public", "stranger", True), ("public", "anonymous", False), ("ticket_holders", "stranger", False),
    ("ticket_holders", "attendee", True), ("staff", "attendee", False), ("staff", "staff", True),
    ("staff", "moderator", True),
])
def test_live_access(live_access: str, who: str, joins: bool) -> None:
    assert access(who, live_access=live_access).can(Action.JOIN_LIVE) is joins


def test_not_found_names_the_subject() -> None:
    with pytest.raises(FoyerError) as caught:
        decide(access("stranger", status="draft"), Action.VIEW_EVENT, subject="session")
    assert (caught.value.code, caught.value.message) == ("not_found", "session not found")


def test_filter_visible() -> None:
    class Row:
        def __init__(self, status: str) -> None:
            self.id, self.status, self.owner_id = uuid.uuid4(), status, OWNER_ID
            self.live_access, self.published_at = "public", (None if status == "draft" else datetime.now(UTC))

    rows = [Row("published"), Row("draft"), Row("cancelled")]
    assert [r.status for r, _ in filter_visible(rows, None)] == ["published", "cancelled"]
    owner = Principal(OWNER_ID)
    assert len(filter_visible(rows, owner)) == 3  # the owner sees their draft
    assert len(filter_visible(rows, owner, roles_of=lambda r: ["organizer"])) == 3
