"""Live rooms on one in-process node: authorization per live_access, chat rules, moderation
rights, rate limits, reactions, reports, broadcasts from the outbox, presence."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from handlers.api import CORE
from rooms.consumers import make_consumers
from rooms.presence import is_user_online
from storage.outbox import OutboxEvent
from tests.live.helpers import Client, create_event, create_session, grant


@pytest.fixture
def live_settings(settings_factory):
    return settings_factory(live_presence_interval_seconds=0.1)


@pytest.fixture
async def node(app_factory, live_settings):
    return await app_factory(live_settings)


async def connect(node, user) -> Client:
    c = Client(str(node.make_url("/")), user.access_token, user)
    await c.connect()
    return c


def err(ack: dict) -> str:
    assert ack["ok"] is False, ack
    return ack["error"]["code"]


async def test_who_may_join_follows_live_access_and_roles(node, api, database_url):
    api.base_url = str(node.make_url("/")).rstrip("/")
    org, att, mod, scanner, stranger = await asyncio.gather(
        *(api.register(n) for n in ("Org", "Att", "Mod", "Scan", "Stranger")))
    event_id = await create_event(database_url, org.id)  # ticket_holders (default)
    await grant(database_url, event_id, att.id, "attendee")
    await grant(database_url, event_id, mod.id, "moderator")
    await grant(database_url, event_id, scanner.id, "staff")
    session_id = await create_session(database_url, event_id)
    clients = {u.name: await connect(node, u) for u in (org, att, mod, scanner, stranger)}

    async def join(name: str, room: str) -> dict:
        return await clients[name].call("room:join", {"room": room})

    lobby, staff, session = f"event:{event_id}", f"staff:{event_id}", f"session:{session_id}"
    assert (await join("Att", lobby))["ok"] and (await join("Att", session))["ok"]
    assert err(await join("Stranger", lobby)) == "forbidden"  # not a ticket holder
    assert err(await join("Att", staff)) == "forbidden"
    for who in ("Org", "Mod", "Scan"):
        ack = await join(who, staff)
        assert ack["ok"] and ack.get("moderator", False) == (who != "Scan")
    assert err(await join("Att", f"user:{org.id}")) == "not_found"
    assert (await join("Att", f"user:{att.id}"))["ok"]
    assert err(await join("Att", f"session:{uuid.uuid4()}")) == "not_found"
    assert err(await join("Att", f"event:{uuid.uuid4()}")) == "not_found"
    assert err(await join("Att", "lobby")) == "validation_failed"
    bad = await clients["Att"].call("room:join", {"room": lobby, "extra": 1})
    assert err(bad) == "validation_failed" and bad["error"]["details"][0]["field"] == "extra"

    public = await create_event(database_url, org.id, live_access="public")
    assert (await join("Stranger", f"event:{public}"))["ok"]
    staff_only = await create_event(database_url, org.id, live_access="staff")
    await grant(database_url, staff_only, att.id, "attendee")
    assert err(await join("Att", f"event:{staff_only}")) == "forbidden"
    assert (await join("Scan", f"event:{staff_only}"))["ok"] is False  # scanner has no role there
    draft = await create_event(database_url, org.id, live_access="public", status="draft")
    assert err(await join("Stranger", f"event:{draft}")) == "not_found"
    assert (await join("Org", f"event:{draft}"))["ok"]
    for c in clients.values():
        await c.disconnect()


async def test_chat_rules_moderation_and_reports(node, api, database_url):
    api.base_url = str(node.make_url("/")).rstrip("/")
    org, att, other, mod = await asyncio.gather(*(api.register(n) for n in ("Org", "Att", "Other", "Mod")))
    event_id = await create_event(database_url, org.id, live_access="public")
    await grant(database_url, event_id, mod.id, "moderator")
    room, staff = f"event:{event_id}", f"staff:{event_id}"
    c_att, c_other, c_mod, c_org = [await connect(node, u) for u in (att, other, mod, org)]
    for c in (c_att, c_other, c_mod):
        await c.join(room)
    await c_org.join(staff)

    assert err(await c_org.send(room, "not joined")) == "not_member"
    assert err(await c_att.send(room, "   ")) == "validation_failed"
    assert err(await c_att.send(room, "x" * 501)) == "validation_failed"
    assert err(await c_att.send(room, "u" * 10, client_id="")) == "validation_failed"
    m1 = await c_att.send(room, "hello all")
    assert m1["ok"]
    reply = await c_other.send(room, "hi!", reply_to=m1["id"])
    assert reply["ok"]
    assert err(await c_other.send(room, "to nothing", reply_to=str(uuid.uuid4()))) == "not_found"
    msgs = await c_att.wait_messages(2)
    assert msgs[1]["reply_to"] == m1["id"] and msgs[1]["user"] == {"id": other.id, "name": "Other"}

    # edit/delete own; attendees cannot touch others' messages; moderators delete (never edit) any
    assert err(await c_other.call("chat:edit", {"room": room, "id": m1["id"], "text": "hacked"})) == "forbidden"
    assert err(await c_other.call("chat:delete", {"room": room, "id": m1["id"]})) == "forbidden"
    assert err(await c_mod.call("chat:edit", {"room": room, "id": m1["id"], "text": "mod edit"})) == "forbidden"
    edited = await c_att.call("chat:edit", {"room": room, "id": m1["id"], "text": "hello everyone"})
    assert edited["ok"]
    gone = await c_mod.call("chat:delete", {"room": room, "id": reply["id"]})
    assert gone["ok"]
    await c_other.wait_until(lambda: c_other.events.get("chat:deleted"))
    assert c_other.events["chat:deleted"][0] == {"room": room, "seq": gone["seq"], "id": reply["id"],
                                                 "by": "moderator"}
    assert c_other.events["chat:edited"][0]["text"] == "hello everyone"

    # reactions: once per user and emoji, counted, undone
    r1 = await c_other.call("chat:react", {"room": room, "id": m1["id"], "emoji": "🎉"})
    r2 = await c_mod.call("chat:react", {"room": room, "id": m1["id"], "emoji": "🎉"})
    again = await c_mod.call("chat:react", {"room": room, "id": m1["id"], "emoji": "🎉"})
    assert (r1["count"], r2["count"], again["count"], again["seq"]) == (1, 2, 2, None)
    off = await c_mod.call("chat:react", {"room": room, "id": m1["id"], "emoji": "🎉", "on": False})
    assert off["count"] == 1
    assert err(await c_mod.call("chat:react", {"room": room, "id": m1["id"], "emoji": "ok"})) == "validation_failed"

    # reports reach the staff room, once per reporter
    rep = await c_other.call("chat:report", {"room": room, "id": m1["id"], "reason": "rude"})
    rep2 = await c_other.call("chat:report", {"room": room, "id": m1["id"], "reason": "rude"})
    assert rep["ok"] and rep2["duplicate"] and rep2["id"] == rep["id"]
    await c_org.wait_until(lambda: c_org.events.get("chat:reported"))
    reported = c_org.events["chat:reported"][0]
    assert reported["room"] == staff and reported["in_room"] == room and reported["message"]["id"] == m1["id"]
    assert len(c_org.events["chat:reported"]) == 1

    # mute: refused with `muted` until lifted; only moderators may mute; staff cannot be muted
    assert err(await c_att.call("mod:mute", {"room": room, "user_id": other.id})) == "forbidden"
    assert err(await c_mod.call("mod:mute", {"room": room, "user_id": org.id})) == "forbidden"
    muted = await c_mod.call("mod:mute", {"room": room, "user_id": other.id, "duration_seconds": 600})
    assert muted["ok"]
    refused = await c_other.send(room, "let me speak")
    assert err(refused) == "muted" and refused["error"]["details"]["until"]
    assert (await c_mod.call("mod:unmute", {"room": room, "user_id": other.id}))["lifted"]
    assert (await c_other.send(room, "thanks"))["ok"]

    # ban: kicked out on every node, refused on join, and their sends say not_member
    banned = await c_mod.call("mod:ban", {"room": room, "user_id": other.id, "reason": "spam"})
    assert banned["ok"]
    await c_other.wait_until(lambda: c_other.events.get("room:kicked"))
    assert c_other.events["room:kicked"][0]["reason"] == "banned"
    assert err(await c_other.send(room, "still here?")) == "not_member"
    assert err(await c_other.call("room:join", {"room": room})) == "banned"
    assert (await c_mod.call("mod:unban", {"room": room, "user_id": other.id}))["ok"]
    assert (await c_other.call("room:join", {"room": room}))["ok"]

    # slow mode: one message per user per period; moderators exempt
    assert (await c_mod.call("mod:slow_mode", {"room": room, "seconds": 30}))["ok"]
    await c_att.wait_until(lambda: c_att.events.get("room:slow_mode"))
    assert (await c_att.send(room, "one"))["ok"]
    slow = await c_att.send(room, "two")
    assert err(slow) == "slow_mode" and 1 <= slow["error"]["details"]["retry_after"] <= 30
    assert (await c_mod.send(room, "mods are exempt"))["ok"] and (await c_mod.send(room, "twice"))["ok"]
    for c in (c_att, c_other, c_mod, c_org):
        await c.disconnect()


async def test_rate_limit_and_banned_words(app_factory, settings_factory, api, database_url):
    node = await app_factory(settings_factory(live_chat_rate_limit=5, live_chat_rate_window_seconds=60,
                                              live_banned_words=("spoiler", "darn it")))
    api.base_url = str(node.make_url("/")).rstrip("/")
    user = await api.register("Chatty")
    event_id = await create_event(database_url, user.id, live_access="public")
    other = await api.register("Other")
    room = f"event:{event_id}"
    c = await connect(node, other)
    await c.join(room)
    assert err(await c.send(room, "a SPOILER ahead")) == "message_rejected"
    assert err(await c.send(room, "Darn it!")) == "message_rejected"
    assert (await c.send(room, "darning socks", client_id="ok"))["ok"]  # whole words only
    acks = [await c.send(room, f"m{i}", client_id=f"c{i}") for i in range(4)]
    assert all(a["ok"] for a in acks)
    limited = await c.send(room, "one too many")
    assert err(limited) == "rate_limited"
    assert limited["error"]["details"]["retry_after"] >= 1 and limited["error"]["details"]["retry_after_ms"] > 0
    retry = await c.send(room, "m0", client_id="c0")  # a retry is answered, not rate limited
    assert retry["ok"] and retry["duplicate"] and retry["id"] == acks[0]["id"]
    await c.disconnect()


async def test_outbox_broadcasts_and_online(node, api, database_url):
    api.base_url = str(node.make_url("/")).rstrip("/")
    org, att = await api.register("Org"), await api.register("Att")
    event_id = await create_event(database_url, org.id)
    await grant(database_url, event_id, att.id, "attendee")
    core = node.app[CORE]
    assert not await is_user_online(core, att.id)
    c_att, c_org = await connect(node, att), await connect(node, org)
    await c_att.join(f"event:{event_id}")
    await c_org.join(f"staff:{event_id}")
    deadline = asyncio.get_running_loop().time() + 5
    while not await is_user_online(core, att.id):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)

    (consumer,) = make_consumers(core)

    def outbox(type: str, data: dict) -> OutboxEvent:
        return OutboxEvent(seq=1, id=uuid.uuid4(), type=type, version=1, event_id=uuid.UUID(event_id),
                           key=event_id, data=data, occurred_at=datetime.now(UTC))

    change = outbox("schedule.changed", {"event_id": event_id, "version": 3, "previous_version": 2, "changes": []})
    await consumer.handle(change)
    await consumer.handle(change)  # redelivered by the relay: still one room event
    await consumer.handle(outbox("announcement.posted", {"id": "a1", "text": "Doors open"}))
    await consumer.handle(outbox("ticket.checked_in", {"ticket_id": "t1", "gate": "A"}))
    await consumer.handle(outbox("ticket.checked_in", {"ticket_id": "t2", "gate": "B"}))
    await c_att.wait_until(lambda: c_att.events.get("announcement"))
    sched = c_att.events["schedule:changed"]
    assert len(sched) == 1 and sched[0]["version"] == 3 and sched[0]["seq"] == 1
    assert c_att.events["announcement"][0]["announcement"]["text"] == "Doors open"
    await c_org.wait_until(lambda: c_org.events.get("checkin:stats"))
    assert [u["checkin"]["gate"] for u in c_org.events["checkin:update"]] == ["A", "B"]
    assert c_org.events["checkin:stats"][0]["checked_in"] == 0  # (no real scans in this test's tables)
    assert len(c_org.events["checkin:stats"]) == 1  # coalesced
    assert "checkin:update" not in c_att.events

    await c_att.disconnect()
    while await is_user_online(core, att.id):
        assert asyncio.get_running_loop().time() < deadline + 5
        await asyncio.sleep(0.05)
    await c_org.disconnect()



async def test_private_room_events_and_online_users(node, api):
    """The path notify's in-app channel uses: online_users + a deduplicated event in user:{id}."""
    from rooms.broadcast import publish
    from rooms.presence import online_users

    api.base_url = str(node.make_url("/")).rstrip("/")
    user, other = await api.register("Ann"), await api.register("Offline")
    core = node.app[CORE]
    c = await connect(node, user)
    await c.join(f"user:{user.id}")
    ids = [uuid.UUID(user.id), uuid.UUID(other.id)]
    deadline = asyncio.get_running_loop().time() + 5
    while await online_users(core, ids) != {ids[0]}:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    payload = {"id": "order.paid:1", "kind": "order", "title": "Paid", "body": "Enjoy", "data": {}}
    for _ in range(2):  # an at-least-once redelivery
        await publish(core, room=f"user:{user.id}", event="notification", data=payload, dedupe_key="n:1")
    await c.wait_until(lambda: c.events.get("notification"))
    await asyncio.sleep(0.2)
    (got,) = c.events["notification"]
    assert got["title"] == "Paid" and got["room"] == f"user:{user.id}" and got["seq"] == 1
    await c.disconnect()


async def test_concurrent_publishes_with_one_dedupe_key_make_one_event(node, api, database_url):
    from rooms.broadcast import publish

    api.base_url = str(node.make_url("/")).rstrip("/")
    org = await api.register("Org")
    event_id = await create_event(database_url, org.id, live_access="public")
    core = node.app[CORE]
    results = await asyncio.gather(*(publish(core, room=f"event:{event_id}", event="announcement",
                                             data={"announcement": {"text": "once"}}, dedupe_key="k1")
                                     for _ in range(8)))
    assert len({r.seq for r in results}) == 1 and sum(r.created for r in results) == 1
    assert (await publish(core, room=f"event:{event_id}", event="announcement", data={}, dedupe_key="k2")).seq == 2


async def test_announcement_and_schedule_change_reach_the_lobby_through_the_relay(node, api, database_url):
    """HTTP → outbox → the real relay → rooms.consumers → room events (nothing called by hand)."""
    from datetime import timedelta

    api.base_url = str(node.make_url("/")).rstrip("/")
    org, att = await api.register("Org"), await api.register("Att")
    event_id = await create_event(database_url, org.id, live_access="public")
    c = await connect(node, att)
    await c.join(f"event:{event_id}")
    status, body = await api.post(f"/api/events/{event_id}/announcements", user=att, json={"text": "hi"})
    assert status == 403 and body["error"]["code"] == "forbidden", (status, body)
    status, body = await api.post(f"/api/events/{event_id}/announcements", user=org,
                                  json={"title": "Doors", "text": "Doors open at 9"})
    assert status == 202, body
    got = (await c.wait_until(lambda: c.events.get("announcement"), within=15)) or c.events["announcement"][0]
    assert got["announcement"]["text"] == "Doors open at 9" and got["announcement"]["id"] == body["id"]
    start = datetime.now(UTC) + timedelta(hours=2)
    status, session = await api.post(f"/api/events/{event_id}/sessions", user=org, json={
        "title": "Keynote", "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat()})
    assert status == 201, session
    await c.wait_until(lambda: c.events.get("schedule:changed"), within=15)
    change = c.events["schedule:changed"][0]
    assert change["changes"][0]["entity_id"] == session["id"] and change["seq"] > got["seq"]
    await c.disconnect()
