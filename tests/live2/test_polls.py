"""Polls on one in-process node, with real Socket.IO clients: kinds, lifecycle, one vote per user,
vote changes, word-cloud normalization, hidden results, quiz scoring and leaderboard, rights,
coalesced result broadcasts."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.live2.helpers import (
    bulk_users,
    connect,
    create_event,
    create_session,
    err,
    eventually,
    fetch,
    grant,
)
from tests.support.api import Api


@pytest.fixture
async def node(app_factory, settings_factory):
    # (no `api`/`server` fixture: one node only, so one outbox relay)
    return await app_factory(settings_factory(poll_result_max_hz=4.0, live_action_rate_limit=10_000,
                                              live_banned_words=("darn",)))


@pytest.fixture
async def world(node, http, database_url):
    api = Api(str(node.make_url("/")), http)
    org, mod = await asyncio.gather(api.register("Org"), api.register("Mod"))
    event_id = await create_event(database_url, org.id)
    await grant(database_url, event_id, mod.id, "moderator")
    session_id = await create_session(database_url, event_id)
    voters = await bulk_users(database_url, 4, event_id=event_id)
    url = str(node.make_url("/"))
    return {"api": api, "org": org, "mod": mod, "event_id": event_id, "session_id": session_id, "url": url,
            "voters": voters, "session": f"session:{session_id}", "lobby": f"event:{event_id}",
            "staff": f"staff:{event_id}"}


async def create(w, body: dict, *, by=None, open_it: bool = True) -> dict:
    status, poll = await w["api"].post(f"/api/events/{w['event_id']}/polls", user=by or w["org"], json=body)
    assert status == 201, poll
    if open_it:
        status, opened = await w["api"].post(f"/api/polls/{poll['id']}/open", user=by or w["org"])
        assert status == 200 and opened["state"] == "open", opened
    return poll


def on(client, name: str, poll_id: str) -> list[dict]:
    return [e for e in client.events.get(name, []) if e.get("poll_id", e.get("poll", {}).get("id")) == poll_id]


async def test_lifecycle_choices_changes_rights(world):
    w, api = world, world["api"]
    s = w["session"]
    a, b, c, d = [await connect(w["url"], v) for v in w["voters"]]
    for x in (a, b, c):
        await x.join(s)
    mod = await connect(w["url"], w["mod"])
    await mod.join(w["staff"])

    # definitions are validated; attendees cannot manage
    for bad, field in (({"kind": "pie", "question": "?"}, "kind"),
                       ({"kind": "single", "question": "?", "options": ["only"]}, "options"),
                       ({"kind": "quiz", "question": "?", "options": ["a", "b"]}, "correct"),
                       ({"kind": "rating", "question": "?", "scale_min": 5, "scale_max": 5}, "scale_max"),
                       ({"kind": "single", "question": "?", "options": ["a", "b"], "role": "x"}, "role")):
        status, body = await api.post(f"/api/events/{w['event_id']}/polls", user=w["org"], json=bad)
        assert status == 422 and body["error"]["details"][0]["field"] == field, (bad, body)
    status, _ = await api.post(f"/api/events/{w['event_id']}/polls", user=w["voters"][0],
                               json={"kind": "single", "question": "Mine?", "options": ["a", "b"]})
    assert status == 403

    draft = await create(w, {"kind": "single", "question": "Tea or coffee?", "options": ["Tea", "Coffee"],
                             "session_id": w["session_id"]}, by=w["mod"], open_it=False)
    assert draft["state"] == "draft" and draft["room"] == s
    assert (await api.get(f"/api/polls/{draft['id']}", user=w["voters"][0]))[0] == 404
    assert err(await a.call("poll:vote", {"room": s, "poll_id": draft["id"], "client_id": "1", "option": "o1"})) \
        == "not_found"
    status, edited = await api.put(f"/api/polls/{draft['id']}", user=w["mod"], json={
        "kind": "single", "question": "Tea or coffee, really?", "options": ["Tea", "Coffee", "Water"],
        "session_id": w["session_id"]})
    assert status == 200 and len(edited["options"]) == 3
    assert (await api.post(f"/api/polls/{draft['id']}/open", user=w["voters"][1]))[0] == 403
    status, opened = await api.post(f"/api/polls/{draft['id']}/open", user=w["mod"])
    assert status == 200 and opened["state"] == "open"
    assert (await api.post(f"/api/polls/{draft['id']}/open", user=w["mod"]))[0] == 409
    pid = draft["id"]
    got = (await eventually(lambda: a.events.get("poll:opened")))[0]
    assert got["poll"]["id"] == pid and got["poll"]["question"] == "Tea or coffee, really?"

    # one vote per user: a retry (same client_id) is a duplicate, another vote already_voted
    v1 = await a.call("poll:vote", {"room": s, "poll_id": pid, "client_id": "v1", "option": "o2"})
    assert v1 == {"ok": True, "poll_id": pid, "choices": ["o2"], "changed": False}
    dup = await a.call("poll:vote", {"room": s, "poll_id": pid, "client_id": "v1", "option": "o2"})
    assert dup["duplicate"] is True
    assert err(await a.call("poll:vote", {"room": s, "poll_id": pid, "client_id": "v2", "option": "o1"})) \
        == "already_voted"
    assert err(await b.call("poll:vote", {"room": s, "poll_id": pid, "client_id": "x", "option": "o9"})) \
        == "validation_failed"
    assert err(await b.call("poll:vote", {"room": s, "poll_id": pid, "client_id": "x", "value": 3})) \
        == "validation_failed"
    assert err(await d.call("poll:vote", {"room": s, "poll_id": pid, "client_id": "x", "option": "o1"})) \
        == "not_member"
    assert err(await b.call("poll:vote", {"room": w["lobby"], "poll_id": pid, "client_id": "x", "option": "o1"})) \
        == "not_member"
    for x, opt in ((b, "o2"), (c, "o3")):
        assert (await x.call("poll:vote", {"room": s, "poll_id": pid, "client_id": "k", "option": opt}))["ok"]

    def last_results(client, poll_id=pid, room=s):
        evs = [e for e in on(client, "poll:results", poll_id) if e["room"] == room]
        return evs[-1] if evs else None

    await eventually(lambda: (r := last_results(b)) and r["voters"] == 3
                     and r["results"]["counts"] == {"o1": 0, "o2": 2, "o3": 1})
    staff_copy = await eventually(lambda: last_results(mod, room=w["staff"]))
    assert "results" in staff_copy

    # multiple choice, changeable: a change replaces the vote, never double counts
    multi = await create(w, {"kind": "multiple", "question": "Which talks?", "options": ["A", "B", "C", "D"],
                             "max_choices": 2, "allow_change": True, "session_id": w["session_id"]})
    mid = multi["id"]
    assert err(await a.call("poll:vote", {"room": s, "poll_id": mid, "client_id": "1",
                                          "options": ["o1", "o2", "o3"]})) == "validation_failed"
    assert (await a.call("poll:vote", {"room": s, "poll_id": mid, "client_id": "1", "options": ["o1", "o2"]}))["ok"]
    assert (await b.call("poll:vote", {"room": s, "poll_id": mid, "client_id": "1", "options": ["o2"]}))["ok"]
    ch = await a.call("poll:vote", {"room": s, "poll_id": mid, "client_id": "2", "options": ["o3", "o4"]})
    assert ch["changed"] is True
    # concurrent changes by one user on several connections: the counters stay exact
    await asyncio.gather(*(a.call("poll:vote", {"room": s, "poll_id": mid, "client_id": f"c{i}",
                                                "options": [f"o{1 + i % 4}"]}) for i in range(8)))
    final = await a.call("poll:get", {"room": s, "poll_id": mid})
    mine = final["mine"]
    counts = final["poll"]["results"]["counts"]
    assert final["poll"]["voters"] == 2 and sum(counts.values()) == 1 + len(mine) and counts["o2"] >= 1

    # close: final results, then votes are refused
    assert (await api.post(f"/api/polls/{pid}/close", user=w["voters"][0]))[0] == 403
    status, closed = await api.post(f"/api/polls/{pid}/close", user=w["org"])
    assert status == 200 and closed["voters"] == 3 and closed["results"]["counts"]["o2"] == 2
    await d.join(s)
    assert err(await d.call("poll:vote", {"room": s, "poll_id": pid, "client_id": "late", "option": "o1"})) \
        == "poll_closed"
    done = (await eventually(lambda: on(c, "poll:closed", pid)))[0]
    assert done["results"]["counts"] == {"o1": 0, "o2": 2, "o3": 1} and done["voters"] == 3
    assert (await api.delete(f"/api/polls/{pid}", user=w["org"]))[0] == 409  # only drafts

    # a fresh join: the polls of the room in the snapshot; the staff snapshot has drafts too
    await create(w, {"kind": "single", "question": "Later", "options": ["x", "y"]}, open_it=False)
    snap = (await (late := await connect(w["url"], w["voters"][3])).join(s))["snapshot"]["polls"]["polls"]
    assert [p["id"] for p in snap] == [mid, pid] and snap[1]["results"]["counts"]["o2"] == 2
    staff_snap = (await mod.join(w["staff"]))["snapshot"]["polls"]["polls"]
    assert len(staff_snap) == 3 and staff_snap[0]["state"] == "draft"
    status, listed = await api.get(f"/api/events/{w['event_id']}/polls", user=w["voters"][0])
    assert status == 200 and {p["id"] for p in listed["polls"]} == {pid, mid}
    for x in (a, b, c, d, mod, late):
        await x.disconnect()


async def test_word_cloud_rating_quiz_and_hidden_results(world):
    w, api = world, world["api"]
    lobby = w["lobby"]
    voters = [await connect(w["url"], v) for v in w["voters"]]
    for x in voters:
        await x.join(lobby)
    org = await connect(w["url"], w["org"])
    await org.join(w["staff"])
    a, b, c, d = voters

    # word cloud (event-wide): case, whitespace, diacritics and edge punctuation fold together
    cloud = await create(w, {"kind": "word_cloud", "question": "One word for today?"})
    cid = cloud["id"]
    assert cloud["room"] == lobby
    acks = [await x.call("poll:vote", {"room": lobby, "poll_id": cid, "client_id": "w", "text": t})
            for x, t in ((a, "Café"), (b, "  cafe  "), (c, "CAFÉ!"))]
    assert [x["choices"] for x in acks] == [["cafe"]] * 3
    assert err(await d.call("poll:vote", {"room": lobby, "poll_id": cid, "client_id": "w", "text": "Dárn"})) \
        == "message_rejected"  # the chat banned-words filter, after folding
    assert err(await d.call("poll:vote", {"room": lobby, "poll_id": cid, "client_id": "w", "text": "x" * 41})) \
        == "validation_failed"
    assert err(await d.call("poll:vote", {"room": lobby, "poll_id": cid, "client_id": "w", "text": " !! "})) \
        == "validation_failed"
    assert (await d.call("poll:vote", {"room": lobby, "poll_id": cid, "client_id": "w",
                                       "text": "Hello   World"}))["choices"] == ["hello world"]
    status, got = await api.get(f"/api/polls/{cid}", user=w["voters"][0])
    assert status == 200 and got["results"]["words"] == [{"text": "cafe", "count": 3},
                                                         {"text": "hello world", "count": 1}]

    # rating scale 1..5 with an average
    rating = await create(w, {"kind": "rating", "question": "How was it?", "scale_min": 1, "scale_max": 5})
    for x, v in ((a, 5), (b, 4), (c, 4)):
        assert (await x.call("poll:vote", {"room": lobby, "poll_id": rating["id"], "client_id": "r",
                                           "value": v}))["ok"]
    assert err(await d.call("poll:vote", {"room": lobby, "poll_id": rating["id"], "client_id": "r",
                                          "value": 6})) == "validation_failed"
    status, got = await api.get(f"/api/polls/{rating['id']}", user=w["org"])
    assert got["results"] == {"counts": {"1": 0, "2": 0, "3": 0, "4": 2, "5": 1}, "average": 4.33}

    # quizzes: the correct answer stays hidden until close; results after close only
    q1 = await create(w, {"kind": "quiz", "question": "2 + 2?", "options": ["3", "4", "5"], "correct": [1],
                          "points": 10, "show_results": "after_close"})
    opened = (await eventually(lambda: on(a, "poll:opened", q1["id"])))[0]["poll"]
    assert "correct" not in opened and opened["show_results"] == "after_close"
    staff_opened = (await eventually(lambda: on(org, "poll:opened", q1["id"])))[0]["poll"]
    assert staff_opened["correct"] == ["o2"]
    for x, opt in ((a, "o2"), (b, "o2"), (c, "o1")):
        assert (await x.call("poll:vote", {"room": lobby, "poll_id": q1["id"], "client_id": "q",
                                           "option": opt}))["ok"]
    hidden = await eventually(lambda: (r := on(d, "poll:results", q1["id"])) and r[-1]["voters"] == 3 and r[-1])
    assert "results" not in hidden
    staff_full = await eventually(lambda: (r := [e for e in on(org, "poll:results", q1["id"])
                                                 if e["voters"] == 3]) and r[-1])
    assert staff_full["results"]["counts"] == {"o1": 1, "o2": 2, "o3": 0}
    peek = await d.call("poll:get", {"room": lobby, "poll_id": q1["id"]})
    assert "results" not in peek["poll"] and "correct" not in peek["poll"] and peek["poll"]["voters"] == 3
    status, closed = await api.post(f"/api/polls/{q1['id']}/close", user=w["org"])
    assert status == 200
    final = (await eventually(lambda: on(d, "poll:closed", q1["id"])))[0]
    assert final["correct"] == ["o2"] and final["results"]["counts"] == {"o1": 1, "o2": 2, "o3": 0}
    assert [(x["rank"], x["score"]) for x in final["leaderboard"]] == [(1, 10), (2, 10), (3, 0)]
    assert final["leaderboard"][0]["user"]["id"] == w["voters"][0].id  # a answered first: faster

    # a second quiz with two correct answers: exact match scores; standings add up
    q2 = await create(w, {"kind": "quiz", "question": "Primes?", "options": ["2", "4", "5", "9"],
                          "correct": [0, 2], "points": 5})
    assert err(await c.call("poll:vote", {"room": lobby, "poll_id": q2["id"], "client_id": "q",
                                          "option": "o1"})) == "validation_failed"
    for x, opts in ((c, ["o1", "o3"]), (b, ["o1"]), (d, ["o3", "o1"])):
        assert (await x.call("poll:vote", {"room": lobby, "poll_id": q2["id"], "client_id": "q",
                                           "options": opts}))["ok"]
    await api.post(f"/api/polls/{q2['id']}/close", user=w["org"])
    board = await c.call("poll:leaderboard", {"room": lobby})
    scores = {x["user"]["name"]: x["score"] for x in board["leaderboard"]}
    assert scores == {"Voter 0": 10, "Voter 1": 10, "Voter 2": 5, "Voter 3": 5}
    assert board["me"]["score"] == 5 and board["me"]["answered"] == 2
    for x in (*voters, org):
        await x.disconnect()


async def test_result_broadcasts_are_coalesced_and_exact(world, database_url):
    w = world
    s = w["session"]
    crowd = await bulk_users(database_url, 60, event_id=w["event_id"], prefix="Crowd")
    watcher = await connect(w["url"], w["voters"][0])
    await watcher.join(s)
    clients = [await connect(w["url"], p) for p in crowd[:6]]
    for x in clients:
        await x.join(s)
    poll = await create(w, {"kind": "single", "question": "Left or right?", "options": ["Left", "Right"],
                            "session_id": w["session_id"]})
    pid = poll["id"]
    started = time.monotonic()
    # 60 voters on 6 connections (joined users vote for themselves only: one per connection user,
    # so the rest vote over their own connections in waves)
    acks = await asyncio.gather(*(x.call("poll:vote", {"room": s, "poll_id": pid, "client_id": "v",
                                                       "option": "o1" if i % 3 else "o2"})
                                  for i, x in enumerate(clients)))
    assert all(a["ok"] for a in acks)
    rest = crowd[6:]
    for i in range(0, len(rest), 6):
        wave = [await connect(w["url"], p) for p in rest[i:i + 6]]
        for x in wave:
            await x.join(s)
        acks = await asyncio.gather(*(x.call("poll:vote", {"room": s, "poll_id": pid, "client_id": "v",
                                                           "option": "o1" if (i + 6 + j) % 3 else "o2"})
                                      for j, x in enumerate(wave)))
        assert all(a["ok"] for a in acks), acks
        for x in wave:
            await x.disconnect()
    expected = {"o1": sum(1 for i in range(60) if i % 3), "o2": sum(1 for i in range(60) if not i % 3)}

    def last():
        evs = on(watcher, "poll:results", pid)
        return evs[-1] if evs else None

    await eventually(lambda: (r := last()) and r["voters"] == 60 and r["results"]["counts"] == expected)
    elapsed = time.monotonic() - started
    broadcasts = len(on(watcher, "poll:results", pid))
    # at most 4 per second (plus the leading edge), far fewer than 60 votes
    assert 1 <= broadcasts <= int(elapsed * 4) + 2 and broadcasts < 60, (broadcasts, elapsed)
    seqs = [e["seq"] for e in on(watcher, "poll:results", pid)]
    assert seqs == sorted(seqs)
    rows = await fetch(database_url, "SELECT count(*) AS n FROM poll_votes WHERE poll_id = $1::uuid", pid)
    assert rows[0]["n"] == 60
    for x in (watcher, *clients):
        await x.disconnect()
