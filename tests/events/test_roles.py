"""The role × action table over HTTP, for every role on the event and outside it.

Roles: owner, co-organizer, moderator, staff, attendee (granted through storage, as ticketing
does), stranger (signed in, no role), anonymous, admin. Each is checked on a published event and
on a draft: drafts are invisible (404, same body as a missing id) to everyone without a team
role; visible events answer 403 for actions the role does not grant. Error bodies carry no
event data.
"""

from __future__ import annotations

import uuid

import pytest

from domain.identity import Principal
from handlers.api import CORE
from storage import events as event_store
from tests.events.helpers import add_session, at, create_event, event_body
from tests.support.api import User

ROLES = ["owner", "co", "moderator", "staff", "attendee", "stranger", "anonymous", "admin"]

# action -> expected status per role on a PUBLISHED event (None: the route needs sign-in -> 401)
PUBLISHED = {
    "view":        dict(owner=200, co=200, moderator=200, staff=200, attendee=200, stranger=200, anonymous=200, admin=200),
    "schedule":    dict(owner=200, co=200, moderator=200, staff=200, attendee=200, stranger=200, anonymous=200, admin=200),
    "team":        dict(owner=200, co=200, moderator=200, staff=403, attendee=403, stranger=403, anonymous=403, admin=200),
    "update":      dict(owner=200, co=200, moderator=403, staff=403, attendee=403, stranger=403, anonymous=401, admin=200),
    "add_session": dict(owner=201, co=201, moderator=403, staff=403, attendee=403, stranger=403, anonymous=401, admin=201),
    "add_speaker": dict(owner=201, co=201, moderator=403, staff=403, attendee=403, stranger=403, anonymous=401, admin=201),
    "edit_session": dict(owner=200, co=200, moderator=403, staff=403, attendee=403, stranger=403, anonymous=401, admin=200),
    "add_moderator": dict(owner=201, co=201, moderator=403, staff=403, attendee=403, stranger=403, anonymous=401, admin=201),
    "add_organizer": dict(owner=201, co=403, moderator=403, staff=403, attendee=403, stranger=403, anonymous=401, admin=201),
    "bookmark":    dict(owner=200, co=200, moderator=200, staff=200, attendee=200, stranger=200, anonymous=401, admin=200),
    "delete":      dict(owner=409, co=403, moderator=403, staff=403, attendee=403, stranger=403, anonymous=401, admin=409),
    "cancel":      dict(owner=200, co=403, moderator=403, staff=403, attendee=403, stranger=403, anonymous=401, admin=200),
}
# on a DRAFT
DRAFT = {
    "view":        dict(owner=200, co=200, moderator=200, staff=200, attendee=404, stranger=404, anonymous=404, admin=200),
    "schedule":    dict(owner=200, co=200, moderator=200, staff=200, attendee=404, stranger=404, anonymous=404, admin=200),
    "team":        dict(owner=200, co=200, moderator=200, staff=403, attendee=404, stranger=404, anonymous=404, admin=200),
    "update":      dict(owner=200, co=200, moderator=403, staff=403, attendee=404, stranger=404, anonymous=401, admin=200),
    "add_session": dict(owner=201, co=201, moderator=403, staff=403, attendee=404, stranger=404, anonymous=401, admin=201),
    "edit_session": dict(owner=200, co=200, moderator=403, staff=403, attendee=404, stranger=404, anonymous=401, admin=200),
    "add_organizer": dict(owner=201, co=403, moderator=403, staff=403, attendee=404, stranger=404, anonymous=401, admin=201),
    "bookmark":    dict(owner=200, co=200, moderator=200, staff=200, attendee=404, stranger=404, anonymous=401, admin=200),
    "cancel":      dict(owner=409, co=403, moderator=403, staff=403, attendee=404, stranger=404, anonymous=401, admin=409),
    "publish":     dict(owner=200, co=200, moderator=403, staff=403, attendee=404, stranger=404, anonymous=401, admin=200),
    "delete":      dict(owner=204, co=403, moderator=403, staff=403, attendee=404, stranger=404, anonymous=401, admin=204),
}
MUTATING_ONCE = {"publish", "delete", "cancel"}  # run on a fresh event per role when they succeed


class World:
    def __init__(self, api, server) -> None:
        self.api = api
        self.server = server
        self.users: dict[str, User | None] = {}
        self.target = 0

    async def build(self) -> None:
        api = self.api
        self.users["owner"] = await api.register_2fa("Owner")
        self.users["co"] = await api.register_2fa("Co")
        for role in ("moderator", "staff", "attendee", "stranger"):
            self.users[role] = await api.register(role.title())
        admin = await api.register_2fa("Admin")
        await self.server.app[CORE].db.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(admin.id))
        admin.access_token = self.server.app[CORE].tokens.issue_access(Principal(uuid.UUID(admin.id), role="admin"))
        self.users["admin"] = admin
        self.users["anonymous"] = None
        # plain accounts to add to teams (they never sign in: no password hashing needed)
        rows = await self.server.app[CORE].db.fetch(
            """INSERT INTO users (email, name, password_hash)
               SELECT 'extra' || g || '-' || gen_random_uuid() || '@example.org', 'Extra ' || g, 'x'
                 FROM generate_series(1, 40) g RETURNING id""")
        self.extra = [str(r["id"]) for r in rows]
        self.next_extra = 0

    async def event(self, *, published: bool) -> dict:
        api, owner = self.api, self.users["owner"]
        event = await create_event(api, owner)
        eid = uuid.UUID(event["id"])
        db = self.server.app[CORE].db
        status, _ = await api.post(f"/api/events/{eid}/organizers", user=owner, json={"user_id": self.users["co"].id})
        assert status == 201
        for role in ("moderator", "staff"):
            status, _ = await api.post(f"/api/events/{eid}/{role if role == 'staff' else 'moderators'}", user=owner,
                                       json={"user_id": self.users[role].id})
            assert status == 201
        async with db.transaction("grant") as conn:
            await event_store.add_member(conn, event_id=eid, user_id=uuid.UUID(self.users["attendee"].id),
                                         role="attendee")
        event["session"] = await add_session(api, owner, event["id"])
        if published:
            status, event_pub = await api.post(f"/api/events/{eid}/publish", user=owner)
            assert status == 200
            event.update({k: v for k, v in event_pub.items() if k != "session"})
        return event

    def next_user(self) -> str:
        self.next_extra += 1
        return self.extra[self.next_extra - 1]


async def perform(world: World, action: str, event: dict, user: User | None) -> tuple[int, object]:
    api, eid, sid = world.api, event["id"], event["session"]["id"]
    slot = world.target
    match action:
        case "view":
            return await api.get(f"/api/events/{eid}", user=user)
        case "schedule":
            return await api.get(f"/api/events/{eid}/schedule", user=user)
        case "team":
            return await api.get(f"/api/events/{eid}/team", user=user)
        case "update":
            return await api.patch(f"/api/events/{eid}", user=user, json={"description": f"edit {slot}"})
        case "add_session":
            world.target += 1
            return await api.post(f"/api/events/{eid}/sessions", user=user, json={
                "title": "By role", "starts_at": at(3 + world.target * 0.1), "ends_at": at(3.05 + world.target * 0.1),
                "room": "Role room"})
        case "add_speaker":
            return await api.post(f"/api/events/{eid}/speakers", user=user, json={"name": "Speaker"})
        case "edit_session":
            world.target += 1
            return await api.patch(f"/api/sessions/{sid}", user=user, json={"title": f"Edited {world.target}"})
        case "add_moderator":
            return await api.post(f"/api/events/{eid}/moderators", user=user, json={"user_id": world.next_user()})
        case "add_organizer":
            return await api.post(f"/api/events/{eid}/organizers", user=user, json={"user_id": world.next_user()})
        case "bookmark":
            return await api.put(f"/api/me/agenda/{sid}", user=user)
        case "delete":
            return await api.delete(f"/api/events/{eid}", user=user)
        case "cancel":
            return await api.post(f"/api/events/{eid}/cancel", user=user)
        case "publish":
            return await api.post(f"/api/events/{eid}/publish", user=user)
    raise AssertionError(action)


@pytest.mark.parametrize("published", [True, False], ids=["published", "draft"])
async def test_role_action_table_over_http(api, server, published):
    world = World(api, server)
    await world.build()
    table = PUBLISHED if published else DRAFT
    shared = await world.event(published=published)
    missing = {"id": str(uuid.uuid4()), "session": {"id": str(uuid.uuid4())}}
    failures = []
    for action, expected in table.items():
        for role in ROLES:
            want = expected[role]
            user = world.users[role]
            target = shared
            if action in MUTATING_ONCE and want < 400:
                target = await world.event(published=published)
            status, body = await perform(world, action, target, user)
            if status != want:
                failures.append((action, role, want, status, body))
                continue
            if status in (403, 404):
                # no data of the event in error bodies
                assert set(body) == {"error"} and set(body["error"]) <= {"code", "message", "details"}
                assert target["title"] not in str(body) and target["id"] not in str(body)
            if status == 404:
                # an invisible draft answers exactly like an id that does not exist
                _, missing_body = await perform(world, action, missing, user)
                assert missing_body == body, (action, role)
    assert not failures, "\n".join(map(str, failures))


async def test_publish_needs_2fa_for_admin_and_co_organizer_too(api, server):
    owner = await api.register_2fa()
    co = await api.register()
    event = await create_event(api, owner)
    await api.post(f"/api/events/{event['id']}/organizers", user=owner, json={"user_id": co.id})
    status, body = await api.post(f"/api/events/{event['id']}/publish", user=co)
    assert status == 403 and body["error"]["code"] == "two_factor_required"
    admin = await api.register()
    await server.app[CORE].db.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(admin.id))
    admin.access_token = server.app[CORE].tokens.issue_access(Principal(uuid.UUID(admin.id), role="admin"))
    status, body = await api.post(f"/api/events/{event['id']}/publish", user=admin)
    assert status == 403 and body["error"]["code"] == "two_factor_required"
    status, body = await api.post(f"/api/events/{event['id']}/publish", user=owner)
    assert status == 200


async def test_mass_assignment_on_every_write(api):
    owner = await api.register()
    event = await create_event(api, owner)
    session = await add_session(api, owner, event["id"])
    attempts = [
        ("post", "/api/events", {**event_body(), "owner_id": owner.id}),
        ("patch", f"/api/events/{event['id']}", {"role": "admin"}),
        ("patch", f"/api/events/{event['id']}", {"id": str(uuid.uuid4())}),
        ("post", f"/api/events/{event['id']}/sessions",
         {"title": "x", "starts_at": at(5), "ends_at": at(6), "status": "cancelled"}),
        ("patch", f"/api/sessions/{session['id']}", {"event_id": str(uuid.uuid4())}),
        ("patch", f"/api/sessions/{session['id']}", {"schedule_version": 3}),
        ("post", f"/api/events/{event['id']}/speakers", {"name": "x", "event_id": str(uuid.uuid4())}),
        ("post", f"/api/events/{event['id']}/moderators", {"user_id": owner.id, "role": "organizer"}),
    ]
    for method, path, body in attempts:
        status, out = await getattr(api, method)(path, user=owner, json=body)
        assert status == 422, (path, body, out)
        assert out["error"]["details"][0]["message"] == "unknown field (not settable here)"
