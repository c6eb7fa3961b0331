"""Networking on one in-process node: directory visibility and paging, requests (live
notifications, duplicates, mutual requests, rate limits), one-to-one chat (delivery, dedupe,
replay), blocking both ways and silently."""

from __future__ import annotations

import asyncio

import pytest

from tests.live2.helpers import bulk_users, connect, create_event, err, eventually
from tests.support.api import Api


@pytest.fixture
async def node(app_factory, settings_factory):
    return await app_factory(settings_factory(networking_request_rate_limit=3))


@pytest.fixture
async def net(node, http, database_url):
    api = Api(str(node.make_url("/")), http)
    org = await api.register("Org")
    event_id = await create_event(database_url, org.id)
    people = await bulk_users(database_url, 5, event_id=event_id, names=["Ann", "Ben", "Cal", "Dee", "Eve"])
    other_event = await create_event(database_url, org.id)
    (outsider,) = await bulk_users(database_url, 1, event_id=other_event, prefix="Outsider")
    (stranger,) = await bulk_users(database_url, 1, prefix="Stranger")
    return {"api": api, "event_id": event_id, "other_event": other_event, "outsider": outsider,
            "stranger": stranger, "url": str(node.make_url("/")), **{p.name: p for p in people}}


async def opt_in(api, event_id, user, **profile) -> dict:
    status, body = await api.put(f"/api/events/{event_id}/directory/me", user=user, json=profile)
    assert status == 200, body
    return body


async def directory(api, event_id, user, **params) -> list[str]:
    status, body = await api.get(f"/api/events/{event_id}/directory", user=user, params=params)
    assert status == 200, body
    return [e["user"]["name"] for e in body["entries"]]


async def test_directory_requests_private_chat_and_blocks(net):
    api, eid = net["api"], net["event_id"]
    ann, ben, cal, dee, eve = (net[n] for n in ("Ann", "Ben", "Cal", "Dee", "Eve"))
    base = f"/api/events/{eid}"

    # who may: attendees of the event; browsing needs your own entry
    assert (await api.put(f"{base}/directory/me", user=net["stranger"], json={}))[0] == 403
    status, body = await api.get(f"{base}/directory", user=ann)
    assert status == 403 and body["error"]["code"] == "opt_in_required"
    me = await opt_in(api, eid, ann, title="CTO", company="Acme", interests=["Python", " python ", "Rust"],
                      bio="Builds things")
    assert me["interests"] == ["python", "rust"] and me["user"]["name"] == "Ann"
    for u, title, tags in ((ben, "Engineer", ["Python"]), (cal, "Designer", ["UX"]), (dee, "PM", ["Rust"]),
                           (eve, "Engineer", ["Go"])):
        await opt_in(api, eid, u, title=title, company="Initech", interests=tags)
    await opt_in(api, net["other_event"], net["outsider"], title="Elsewhere")
    assert (await api.put(f"{base}/directory/me", user=ann, json={"role": "admin"}))[0] == 422

    # only the others, of this event, by name, paged
    assert await directory(api, eid, ann) == ["Ben", "Cal", "Dee", "Eve"]
    status, page = await api.get(f"{base}/directory", user=ann, params={"limit": "2"})
    assert [e["user"]["name"] for e in page["entries"]] == ["Ben", "Cal"] and page["next_cursor"]
    assert await directory(api, eid, ann, limit="2", cursor=page["next_cursor"]) == ["Dee", "Eve"]
    assert await directory(api, eid, ann, q="engineer") == ["Ben", "Eve"]
    assert await directory(api, eid, ann, interest="RUST") == ["Dee"]
    assert await directory(api, eid, ben, q="acme") == ["Ann"]
    assert (await api.delete(f"{base}/directory/me", user=eve))[0] == 204
    assert await directory(api, eid, ann) == ["Ben", "Cal", "Dee"]
    assert (await api.get(f"{base}/directory/me", user=eve))[0] == 404

    # requests: live to the addressee's user room, no duplicates, accept → a private room
    c_ann, c_ben = await connect(net["url"], ann), await connect(net["url"], ben)
    await c_ann.join(f"user:{ann.id}")
    await c_ben.join(f"user:{ben.id}")
    assert (await api.post(f"{base}/connections", user=ann, json={"user_id": eve.id}))[0] == 404  # opted out
    status, r1 = await api.post(f"{base}/connections", user=ann, json={"user_id": ben.id, "message": "Hi Ben"})
    assert status == 201 and r1["status"] == "pending" and r1["direction"] == "outgoing"
    status, again = await api.post(f"{base}/connections", user=ann, json={"user_id": ben.id})
    assert status == 200 and again["id"] == r1["id"]
    note = (await eventually(lambda: c_ben.events.get("networking:request")))[0]
    assert note["request"]["id"] == r1["id"] and note["request"]["user"]["name"] == "Ann"
    assert note["request"]["message"] == "Hi Ben" and note["room"] == f"user:{ben.id}"
    assert (await api.post(f"/api/connections/{r1['id']}/accept", user=ann))[0] == 404  # not addressed to Ann
    status, acc = await api.post(f"/api/connections/{r1['id']}/accept", user=ben)
    assert status == 200 and acc["status"] == "accepted"
    room = acc["room"]
    accepted = (await eventually(lambda: c_ann.events.get("networking:accepted")))[0]
    assert accepted["connection"]["room"] == room and accepted["connection"]["user"]["name"] == "Ben"
    assert (await api.post(f"/api/connections/{r1['id']}/decline", user=ben))[0] == 409

    # a request to someone who asked you first accepts theirs
    status, rc = await api.post(f"{base}/connections", user=cal, json={"user_id": ann.id})
    assert status == 201
    status, mutual = await api.post(f"{base}/connections", user=ann, json={"user_id": cal.id})
    assert status == 200 and mutual["id"] == rc["id"] and mutual["status"] == "accepted"

    # private chat: members of the pair only, durable, deduplicated, replayed
    await c_ann.join(room)
    await c_ben.join(room)
    c_cal = await connect(net["url"], cal)
    assert err(await c_cal.call("room:join", {"room": room})) == "not_found"
    assert err(await c_ann.call("chat:send", {"room": room, "text": "hi", "client_id": "x"})) == "forbidden"
    m1 = await c_ann.call("dm:send", {"room": room, "text": "Coffee at 3?", "client_id": "m1"})
    assert m1["ok"] and m1["seq"] == 1
    dup = await c_ann.call("dm:send", {"room": room, "text": "Coffee at 3?", "client_id": "m1"})
    assert dup["duplicate"] and dup["id"] == m1["id"]
    got = (await c_ben.wait_messages(1))[0]
    assert got["text"] == "Coffee at 3?" and got["user"]["name"] == "Ann" and got["room"] == room
    await c_ben.disconnect()
    missed = [await c_ann.call("dm:send", {"room": room, "text": f"ping {i}", "client_id": f"p{i}"})
              for i in range(2)]
    c_ben2 = await connect(net["url"], ben)
    back = await c_ben2.join(room, last_seq=1)
    assert [h["data"]["text"] for h in back["history"]] == ["ping 0", "ping 1"]
    assert [h["data"]["seq"] for h in back["history"]] == [m["seq"] for m in missed]
    fresh = await c_cal.call("room:join", {"room": f"user:{cal.id}"})
    assert fresh["ok"]

    # blocking: both directories hide the pair; the blocker is told, the blocked user is not
    assert (await api.post("/api/networking/blocks", user=ben, json={"user_id": ann.id}))[0] == 201
    assert "Ben" not in await directory(api, eid, ann)
    assert "Ann" not in await directory(api, eid, ben)
    silent = await c_ann.call("dm:send", {"room": room, "text": "are you there?", "client_id": "s1"})
    assert silent["ok"] and silent["seq"] is None
    blocked = await c_ben2.call("dm:send", {"room": room, "text": "go away", "client_id": "b1"})
    assert err(blocked) == "blocked"
    status, body = await api.post(f"{base}/connections", user=ben, json={"user_id": dee.id})
    assert status == 201  # Ben is not blocked by Dee
    assert (await api.post("/api/networking/blocks", user=dee, json={"user_id": cal.id}))[0] == 201
    status, hidden = await api.post(f"{base}/connections", user=cal, json={"user_id": dee.id})
    assert status == 201 and hidden["status"] == "pending"  # silent to Cal
    status, dee_view = await api.get(f"{base}/connections", user=dee)
    assert [c["user"]["name"] for c in dee_view["connections"]] == ["Ben"]  # Cal's request never shows
    status, body = await api.post(f"{base}/connections", user=dee, json={"user_id": cal.id})
    assert status == 403 and body["error"]["code"] == "blocked"
    assert (await api.post(f"/api/connections/{hidden['id']}/accept", user=dee))[0] == 404
    status, blocks = await api.get("/api/networking/blocks", user=dee)
    assert [b["user"]["name"] for b in blocks["blocks"]] == ["Cal"]

    # unblocking restores messages; nothing from the blocked period was delivered
    assert (await api.delete(f"/api/networking/blocks/{ann.id}", user=ben))[0] == 204
    m = await c_ann.call("dm:send", {"room": room, "text": "back again", "client_id": "u1"})
    assert m["ok"] and m["seq"] == 4
    texts = [x["text"] for x in await c_ben2.wait_messages(1)]
    assert texts == ["back again"]

    # requests are rate-limited per user (3 per window here; Cal has sent 2)
    await opt_in(api, eid, eve, title="Back")
    status, _ = await api.post(f"{base}/connections", user=cal, json={"user_id": eve.id})
    assert status == 201
    status, body = await api.post(f"{base}/connections", user=cal, json={"user_id": ben.id})
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(api.last_response.headers["Retry-After"]) >= 1
    for c in (c_ann, c_ben2, c_cal):
        await c.disconnect()
    await asyncio.sleep(0)
