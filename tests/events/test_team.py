"""The team: co-organizers, moderators, staff; owner protection; unknown users; outbox facts."""

from __future__ import annotations

import uuid

from tests.events.helpers import create_event, errors_of


async def test_team_lifecycle(api, db):
    owner = await api.register("Owner")
    co = await api.register("Co")
    mod = await api.register("Mod")
    door = await api.register("Door")
    event = await create_event(api, owner)
    eid = event["id"]

    status, body = await api.post(f"/api/events/{eid}/organizers", user=owner, json={"user_id": co.id})
    assert status == 201 and body["role"] == "organizer" and body["user_id"] == co.id and body["email"] == co.email
    status, body = await api.post(f"/api/events/{eid}/organizers", user=owner, json={"user_id": co.id})
    assert status == 200  # already a co-organizer: idempotent
    # a co-organizer adds moderators and staff, but not more organizers
    status, body = await api.post(f"/api/events/{eid}/moderators", user=co, json={"user_id": mod.id})
    assert status == 201 and body["role"] == "moderator" and body["added_by"] == co.id
    status, _ = await api.post(f"/api/events/{eid}/staff", user=co, json={"user_id": door.id})
    assert status == 201
    status, body = await api.post(f"/api/events/{eid}/organizers", user=co, json={"user_id": door.id})
    assert status == 403 and body["error"]["code"] == "forbidden"

    status, team = await api.get(f"/api/events/{eid}/team", user=owner)
    assert status == 200 and team["owner_id"] == owner.id
    assert [(m["name"], m["role"], m["is_owner"]) for m in team["members"]] == [
        ("Co", "organizer", False), ("Owner", "organizer", True), ("Mod", "moderator", False),
        ("Door", "staff", False)]
    assert all("email" in m for m in team["members"])
    # moderators see the team without e-mail addresses; staff do not see it
    status, team = await api.get(f"/api/events/{eid}/team", user=mod)
    assert status == 200 and all("email" not in m for m in team["members"])
    status, body = await api.get(f"/api/events/{eid}/team", user=door)
    assert status == 403

    # the owner cannot be removed, not even by a co-organizer or by themselves
    status, body = await api.delete(f"/api/events/{eid}/team/{owner.id}/organizer", user=owner)
    assert status == 409 and body["error"]["code"] == "invalid_state"
    status, body = await api.delete(f"/api/events/{eid}/team/{owner.id}/organizer", user=co)
    assert status == 403
    status, _ = await api.delete(f"/api/events/{eid}/team/{mod.id}/moderator", user=co)
    assert status == 204
    status, body = await api.delete(f"/api/events/{eid}/team/{mod.id}/moderator", user=co)
    assert status == 404
    status, body = await api.delete(f"/api/events/{eid}/team/{door.id}/attendee", user=owner)
    assert status == 422 and list(errors_of(body)) == ["role"]
    status, _ = await api.delete(f"/api/events/{eid}/team/{co.id}/organizer", user=owner)
    assert status == 204
    # a removed co-organizer loses access to the draft entirely
    status, body = await api.get(f"/api/events/{eid}", user=co)
    assert status == 404

    facts = await db.fetch("SELECT type, data FROM outbox WHERE type LIKE 'event.member_%' ORDER BY seq")
    assert [(f["type"], f["data"]["role"]) for f in facts] == [
        ("event.member_added", "organizer"), ("event.member_added", "moderator"), ("event.member_added", "staff"),
        ("event.member_removed", "moderator"), ("event.member_removed", "organizer")]


async def test_unknown_user_and_mass_assignment(api):
    owner = await api.register()
    event = await create_event(api, owner)
    status, body = await api.post(f"/api/events/{event['id']}/moderators", user=owner,
                                  json={"user_id": str(uuid.uuid4())})
    assert status == 422 and errors_of(body) == {"user_id": "no active user has this id"}
    status, body = await api.post(f"/api/events/{event['id']}/moderators", user=owner, json={"user_id": "nope"})
    assert status == 422 and list(errors_of(body)) == ["user_id"]
    other = await api.register()
    status, body = await api.post(f"/api/events/{event['id']}/moderators", user=owner,
                                  json={"user_id": other.id, "role": "organizer"})
    assert status == 422 and errors_of(body) == {"role": "unknown field (not settable here)"}


async def test_add_member_for_ticketing(api, db):
    from storage import events as event_store

    owner = await api.register()
    buyer = await api.register()
    event = await create_event(api, owner)
    async with db.transaction("test") as conn:
        assert await event_store.add_member(conn, event_id=uuid.UUID(event["id"]), user_id=uuid.UUID(buyer.id),
                                            role="attendee")
        assert not await event_store.add_member(conn, event_id=uuid.UUID(event["id"]),
                                                user_id=uuid.UUID(buyer.id), role="attendee")
    status, team = await api.get(f"/api/events/{event['id']}/team", user=owner)
    assert buyer.id not in {m["user_id"] for m in team["members"]}  # attendees are not the team
    status, mine = await api.get("/api/me/events", user=buyer, params={"role": "attendee"})
    assert status == 200 and mine["items"] == []  # attendee of a draft: invisible
