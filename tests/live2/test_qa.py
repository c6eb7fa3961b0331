"""Q&A on one in-process node, with real Socket.IO clients: anonymity, dedupe, rate limits,
pre-moderation, edits, answering, pins, moderation rights, the audit trail, join snapshots."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.live2.helpers import Client, connect, create_event, create_session, err, eventually, fetch, grant
from tests.support.api import Api


@pytest.fixture
async def node(app_factory, settings_factory):
    # (no `api`/`server` fixture: one node only, so one outbox relay)
    return await app_factory(settings_factory(qa_ask_rate_limit=3, qa_votes_max_hz=20.0,
                                              live_banned_words=("darn",)))


@pytest.fixture
async def setup(node, http, database_url):
    api = Api(str(node.make_url("/")), http)
    org, mod, ann, ben = await asyncio.gather(*(api.register(n) for n in ("Org", "Mod", "Ann", "Ben")))
    event_id = await create_event(database_url, org.id)
    await grant(database_url, event_id, mod.id, "moderator")
    for u in (ann, ben):
        await grant(database_url, event_id, u.id, "attendee")
    session_id = await create_session(database_url, event_id)
    url = str(node.make_url("/"))
    clients = {u.name: await connect(url, u) for u in (org, mod, ann, ben)}
    yield {"api": api, "event_id": event_id, "session": f"session:{session_id}", "session_id": session_id,
           "staff": f"staff:{event_id}", "users": {u.name: u for u in (org, mod, ann, ben)}, "c": clients}
    for c in clients.values():
        await c.disconnect()


def events_of(client: Client, name: str, room: str) -> list[dict]:
    return [d for d in client.events.get(name, []) if d.get("room") == room]


async def test_ask_anonymity_dedupe_validation_rate_limits(setup, database_url):
    s, c, users = setup["session"], setup["c"], setup["users"]
    ann, ben, mod = c["Ann"], c["Ben"], c["Mod"]
    for x in (ann, ben):
        await x.join(s)
    await mod.join(setup["staff"])

    assert err(await ann.call("qa:ask", {"room": s, "text": "hi", "client_id": "x1", "extra": 1})) \
        == "validation_failed"
    assert err(await c["Org"].call("qa:ask", {"room": s, "text": "hi", "client_id": "x"})) == "not_member"
    assert err(await ann.call("qa:ask", {"room": setup["staff"], "text": "hi", "client_id": "x"})) \
        == "validation_failed"
    assert err(await ann.call("qa:ask", {"room": s, "text": "  ", "client_id": "x"})) == "validation_failed"
    assert err(await ann.call("qa:ask", {"room": s, "text": "q" * 301, "client_id": "x"})) == "validation_failed"
    assert err(await ann.call("qa:ask", {"room": s, "text": "darn it", "client_id": "x"})) == "message_rejected"

    a1 = await ann.call("qa:ask", {"room": s, "text": "Who pays for lunch?", "client_id": "q1", "anonymous": True})
    assert a1["ok"] and a1["status"] == "visible" and a1["seq"] >= 1
    # a retry with the same client_id is the first question, asked once
    again = await ann.call("qa:ask", {"room": s, "text": "Who pays for lunch?", "client_id": "q1", "anonymous": True})
    assert again == {"ok": True, "id": a1["id"], "status": "visible", "duplicate": True}

    # attendees' copy is anonymous, the staff copy names the author
    q = (await eventually(lambda: events_of(ben, "qa:question", s)))[0]
    assert q["id"] == a1["id"] and q["author"] is None and q["anonymous"] is True and q["seq"] == a1["seq"]
    assert "status" not in q
    staff_copy = (await eventually(lambda: events_of(mod, "qa:question", setup["staff"])))[0]
    assert staff_copy["author"] == {"id": users["Ann"].id, "name": "Ann"} and staff_copy["status"] == "visible"
    assert staff_copy["session_id"] == setup["session_id"]
    # nothing in the durable public event names the asker either
    rows = await fetch(database_url, "SELECT data, actor_id FROM room_events WHERE room = $1 AND event = 'qa:question'",
                       s)
    assert len(rows) == 1 and rows[0]["actor_id"] is None and users["Ann"].id not in str(rows[0]["data"])

    named = await ben.call("qa:ask", {"room": s, "text": "Slides online?", "client_id": "b1"})
    assert named["ok"]
    q2 = (await eventually(lambda: events_of(ann, "qa:question", s)[1:]))[0]
    assert q2["author"] == {"id": users["Ben"].id, "name": "Ben"}

    # rate limit: 3 questions per window (Ann has asked 1 so far)
    for i in range(2):
        assert (await ann.call("qa:ask", {"room": s, "text": f"more {i}", "client_id": f"m{i}"}))["ok"]
    limited = await ann.call("qa:ask", {"room": s, "text": "one too many", "client_id": "m9"})
    assert err(limited) == "rate_limited" and limited["error"]["details"]["retry_after"] >= 1

    # mine: own questions with status, upvoted ids
    mine = await ann.call("qa:mine", {"room": s})
    assert [x["id"] for x in mine["questions"]][0] == a1["id"] and mine["questions"][0]["status"] == "visible"

    # a fresh join gets the questions in the snapshot, anonymous stays anonymous
    late = await connect(ann.url, users["Org"])
    ack = await late.join(s)
    snap = ack["snapshot"]["qa"]
    assert snap["total"] == 4 and snap["premoderation"] is False and snap["dismissed_count"] == 0
    by_id = {x["id"]: x for x in snap["questions"]}
    assert by_id[a1["id"]]["author"] is None and by_id[named["id"]]["author"]["name"] == "Ben"
    await late.disconnect()


async def test_upvotes_once_undo_coalesced_and_ordering(setup, database_url):
    s, c = setup["session"], setup["c"]
    ann, ben, org = c["Ann"], c["Ben"], c["Org"]
    for x in (ann, ben, org):
        await x.join(s)
    q1 = await ann.call("qa:ask", {"room": s, "text": "First?", "client_id": "1"})
    q2 = await ann.call("qa:ask", {"room": s, "text": "Second?", "client_id": "2"})

    # double submits count once
    r = await asyncio.gather(*(ben.call("qa:upvote", {"room": s, "id": q2["id"]}) for _ in range(4)))
    assert sorted(x["changed"] for x in r) == [False, False, False, True] and all(x["upvotes"] == 1 for x in r)
    assert (await org.call("qa:upvote", {"room": s, "id": q2["id"]}))["upvotes"] == 2
    assert (await ann.call("qa:upvote", {"room": s, "id": q1["id"]}))["upvotes"] == 1
    undo = await org.call("qa:upvote", {"room": s, "id": q2["id"], "on": False})
    assert undo["changed"] and undo["upvotes"] == 1
    assert (await org.call("qa:upvote", {"room": s, "id": q2["id"], "on": False}))["changed"] is False
    assert err(await ben.call("qa:upvote", {"room": s, "id": str(uuid.uuid4())})) == "not_found"

    # counts reach the room coalesced, as absolute values; the last value is exact
    def latest() -> dict:
        out: dict = {}
        for ev in events_of(ben, "qa:votes", s):
            out.update(ev["votes"])
        return out

    await eventually(lambda: latest() == {q1["id"]: 1, q2["id"]: 1})
    n_votes_events = len(events_of(ben, "qa:votes", s))
    assert 1 <= n_votes_events <= 5  # 5 changes, coalesced
    rows = await fetch(database_url, "SELECT count(*) AS n FROM question_upvotes")
    assert rows[0]["n"] == 2

    listed = await ben.call("qa:list", {"room": s, "order": "votes"})
    assert [x["id"] for x in listed["questions"]] == [q2["id"], q1["id"]]  # tie on votes: newest first
    recent = await ben.call("qa:list", {"room": s, "order": "recent", "limit": 1})
    assert [x["id"] for x in recent["questions"]] == [q2["id"]] and recent["total"] == 2
    mine = await ben.call("qa:mine", {"room": s})
    assert mine["upvoted"] == [q2["id"]] and mine["questions"] == []


async def test_premoderation_edit_answer_pin_rights_and_audit(setup, database_url):
    api = setup["api"]
    s, staff, c, users = setup["session"], setup["staff"], setup["c"], setup["users"]
    ann, ben, mod, org = c["Ann"], c["Ben"], c["Mod"], c["Org"]
    for x in (ann, ben):
        await x.join(s)
    await mod.join(staff)
    await org.join(s)

    # attendees cannot moderate (forbidden), not even from their own session room
    assert err(await ann.call("qa:settings", {"room": s, "premoderation": True})) == "forbidden"
    on = await org.call("qa:settings", {"room": s, "premoderation": True})
    assert on["ok"] and on["changed"]
    await eventually(lambda: events_of(ben, "qa:settings", s))

    p1 = await ann.call("qa:ask", {"room": s, "text": "Pending one", "client_id": "p1", "anonymous": True})
    p2 = await ben.call("qa:ask", {"room": s, "text": "Rude one", "client_id": "p2"})
    assert p1["status"] == "pending" and p1["seq"] is None
    pend = await eventually(lambda: [e for e in events_of(mod, "qa:question", staff) if e["status"] == "pending"]
                            if len(events_of(mod, "qa:question", staff)) >= 2 else None)
    assert pend[0]["author"]["name"] == "Ann" and pend[0]["anonymous"] is True
    # edit own while pending: only staff sees it
    assert err(await ben.call("qa:edit", {"room": s, "id": p1["id"], "text": "hijack"})) == "forbidden"
    ed = await ann.call("qa:edit", {"room": s, "id": p1["id"], "text": "Pending one, edited"})
    assert ed["ok"]
    await eventually(lambda: events_of(mod, "qa:edited", staff))
    assert err(await ann.call("qa:upvote", {"room": s, "id": p1["id"]})) == "not_found"  # not visible yet

    assert err(await ann.call("qa:approve", {"room": s, "id": p1["id"]})) == "forbidden"
    assert err(await ann.call("qa:dismiss", {"room": s, "id": p2["id"]})) == "forbidden"
    assert err(await ann.call("qa:pin", {"room": s, "id": p1["id"]})) == "forbidden"
    assert err(await ann.call("qa:answer", {"room": s, "id": p1["id"]})) == "forbidden"

    ap = await mod.call("qa:approve", {"room": staff, "id": p1["id"]})  # from the staff room
    assert ap["ok"] and ap["changed"]
    shown = (await eventually(lambda: events_of(ben, "qa:question", s)))[0]
    assert shown["id"] == p1["id"] and shown["author"] is None and shown["text"] == "Pending one, edited"
    assert err(await ann.call("qa:edit", {"room": s, "id": p1["id"], "text": "too late"})) == "invalid_state"
    dis = await mod.call("qa:dismiss", {"room": staff, "id": p2["id"], "reason": "off topic"})
    assert dis["ok"] and dis["dismissed_count"] == 1
    d = (await eventually(lambda: events_of(ann, "qa:dismissed", s)))[0]
    assert d == {"room": s, "seq": d["seq"], "dismissed_count": 1}  # attendees never saw it: count only
    assert len(events_of(ann, "qa:question", s)) == 1

    # pins: one at a time; concurrent pins by two moderators leave exactly one pinned
    await org.call("qa:settings", {"room": s, "premoderation": False})
    qs = [await ben.call("qa:ask", {"room": s, "text": f"Q{i}", "client_id": f"q{i}"}) for i in range(2)]
    pin1 = await org.call("qa:pin", {"room": s, "id": p1["id"]})
    assert pin1["ok"] and pin1["previous"] is None
    pin2 = await mod.call("qa:pin", {"room": staff, "id": qs[0]["id"]})
    assert pin2["previous"] == p1["id"]
    await asyncio.gather(org.call("qa:pin", {"room": s, "id": qs[1]["id"]}),
                         mod.call("qa:pin", {"room": staff, "id": p1["id"]}))
    pinned = await fetch(database_url, "SELECT id FROM questions WHERE pinned")
    assert len(pinned) == 1
    pins = await eventually(lambda: events_of(ann, "qa:pinned", s)[3:] and events_of(ann, "qa:pinned", s))
    assert pins[-1]["id"] == str(pinned[0]["id"])
    unpin = await org.call("qa:pin", {"room": s, "id": str(pinned[0]["id"]), "on": False})
    assert unpin["ok"] and unpin["previous"] == str(pinned[0]["id"])

    # answered: room event, and the outbox fact the push engineer turns into a notification
    ans = await mod.call("qa:answer", {"room": staff, "id": p1["id"]})
    assert ans["ok"] and ans["changed"]
    a = (await eventually(lambda: events_of(ben, "qa:answered", s)))[0]
    assert a["id"] == p1["id"] and a["answered"] is True
    fact = await fetch(database_url, "SELECT data FROM outbox WHERE type = 'question.answered'")
    assert len(fact) == 1 and fact[0]["data"]["author_id"] == users["Ann"].id
    assert fact[0]["data"]["text"] == "Pending one, edited"
    assert err(await ann.call("qa:edit", {"room": s, "id": qs[0]["id"], "text": "x"})) == "forbidden"

    # a moderator of another event is not a moderator here
    other_event = await create_event(database_url, users["Mod"].id)
    other_mod = await api.register("OtherMod")
    await grant(database_url, other_event, other_mod.id, "moderator")
    await grant(database_url, setup["event_id"], other_mod.id, "attendee")
    om = await connect(ann.url, other_mod)
    await om.join(s)
    assert err(await om.call("qa:dismiss", {"room": s, "id": qs[0]["id"]})) == "forbidden"
    await om.disconnect()

    # the audit trail (organizers only): who did what, when, newest first
    status, body = await api.get(f"/api/events/{setup['event_id']}/qa/audit", user=users["Org"])
    assert status == 200, body
    actions = [(x["action"], x["actor"]["name"]) for x in body["entries"]]
    assert [a for a, _ in reversed(actions)] == [
        "settings", "approve", "dismiss", "settings", "pin", "pin", "pin", "pin", "unpin", "answer"]
    assert ("dismiss", "Mod") in actions and body["entries"][0]["created_at"]
    status, _ = await api.get(f"/api/events/{setup['event_id']}/qa/audit", user=users["Mod"])
    assert status == 403
    status, _ = await api.get(f"/api/events/{setup['event_id']}/qa/audit", user=users["Ann"])
    assert status == 403

    # a fresh join: dismissed count, pinned, answered state
    late = await connect(ann.url, users["Ben"])
    snap = (await late.join(s))["snapshot"]["qa"]
    assert snap["dismissed_count"] == 1 and snap["pinned"] is None
    assert {x["id"]: x["answered"] for x in snap["questions"]}[p1["id"]] is True
    staff_client = await connect(ann.url, users["Org"])
    assert (await staff_client.join(staff))["snapshot"]["qa"] == {"pending": []}
    for x in (late, staff_client):
        await x.disconnect()
