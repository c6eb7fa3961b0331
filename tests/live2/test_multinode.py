"""Q&A and polls on two real node processes sharing PostgreSQL and Redis: one upvote per user
and one vote per user under concurrent double submits on both nodes, coalesced result
broadcasts with exact final counts, moderation rights and rate limits across nodes."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.live2.helpers import connect, create_event, create_session, err, eventually, fetch, grant
from tests.support.api import Api

pytestmark = pytest.mark.multinode

ENV = {"FOYER_LIVE_ACTION_RATE_LIMIT": "10000", "FOYER_QA_ASK_RATE_LIMIT": "2",
       "FOYER_QA_VOTES_MAX_HZ": "4", "FOYER_POLL_RESULT_MAX_HZ": "4"}


@pytest.fixture
async def cluster(nodes, http, database_url):
    a, b = await asyncio.gather(nodes.start(env=ENV), nodes.start(env=ENV))
    api = Api(a.url, http)
    users = await asyncio.gather(*(api.register(f"U{i}") for i in range(6)), api.register("Org"),
                                 api.register("Mod"))
    attendees, org, mod = list(users[:6]), users[6], users[7]
    event_id = await create_event(database_url, org.id)
    await grant(database_url, event_id, mod.id, "moderator")
    for u in attendees:
        await grant(database_url, event_id, u.id, "attendee")
    session_id = await create_session(database_url, event_id)
    return {"a": a, "b": b, "api": api, "attendees": attendees, "org": org, "mod": mod, "event_id": event_id,
            "session": f"session:{session_id}", "staff": f"staff:{event_id}"}


async def test_one_upvote_and_one_vote_per_user_across_nodes_rights_and_limits(cluster, database_url):
    a, b, s = cluster["a"], cluster["b"], cluster["session"]
    people = cluster["attendees"]
    on_a = [await connect(a.url, u) for u in people]
    on_b = [await connect(b.url, u) for u in people]
    for c in on_a + on_b:
        await c.join(s)
    q = await on_a[0].call("qa:ask", {"room": s, "text": "Double clicks?", "client_id": "dc"})
    assert q["ok"]

    # every user double-clicks on both nodes at once: 4 submits per user, one upvote each
    acks = await asyncio.gather(*(c.call("qa:upvote", {"room": s, "id": q["id"]})
                                  for c in on_a + on_b for _ in range(2)))
    assert all(x["ok"] for x in acks)
    assert sum(x["changed"] for x in acks) == len(people)
    rows = await fetch(database_url, "SELECT upvotes FROM questions WHERE id = $1::uuid", q["id"])
    assert rows[0]["upvotes"] == len(people)
    assert (await fetch(database_url, "SELECT count(*) AS n FROM question_upvotes"))[0]["n"] == len(people)

    def last_votes(c) -> int | None:
        evs = [e for e in c.events.get("qa:votes", []) if q["id"] in e["votes"]]
        return evs[-1]["votes"][q["id"]] if evs else None

    for watcher in (on_a[1], on_b[2]):  # the final coalesced count is exact on both nodes
        await eventually(lambda w=watcher: last_votes(w) == len(people))
    # 24 submits, 6 changes: at most a handful of coalesced broadcasts (4 per second)
    assert 1 <= len(on_b[2].events["qa:votes"]) <= 4

    undo = await asyncio.gather(*(c.call("qa:upvote", {"room": s, "id": q["id"], "on": False})
                                  for c in on_a + on_b))
    assert sum(x["changed"] for x in undo) == len(people)
    await eventually(lambda: last_votes(on_a[3]) == 0)

    # moderation rights hold on the other node; moderator acts from node B, attendees on A see it
    assert err(await on_b[1].call("qa:dismiss", {"room": s, "id": q["id"]})) == "forbidden"
    mod = await connect(b.url, cluster["mod"])
    await mod.join(cluster["staff"])
    dis = await mod.call("qa:dismiss", {"room": cluster["staff"], "id": q["id"]})
    assert dis["ok"] and dis["dismissed_count"] == 1
    gone = await eventually(lambda: on_a[4].events.get("qa:dismissed"))
    assert gone[0]["id"] == q["id"]

    # the ask rate limit (2 per window) holds across nodes
    assert (await on_a[5].call("qa:ask", {"room": s, "text": "one", "client_id": "r1"}))["ok"]
    assert (await on_b[5].call("qa:ask", {"room": s, "text": "two", "client_id": "r2"}))["ok"]
    assert err(await on_a[5].call("qa:ask", {"room": s, "text": "three", "client_id": "r3"})) == "rate_limited"

    # --- polls on the same two nodes ---------------------------------------------------------------
    api, org = cluster["api"], cluster["org"]

    async def open_poll(body: dict) -> str:
        status, poll = await api.post(f"/api/events/{cluster['event_id']}/polls", user=org,
                                      json={**body, "session_id": s.split(":")[1]})
        assert status == 201, poll
        status, opened = await api.post(f"/api/polls/{poll['id']}/open", user=org)
        assert status == 200, opened
        return poll["id"]

    # one vote per user: each user votes twice on each node at once, with different client_ids
    pid = await open_poll({"kind": "single", "question": "A or B?", "options": ["A", "B"]})
    started = time.monotonic()
    votes = await asyncio.gather(*(c.call("poll:vote", {"room": s, "poll_id": pid, "client_id": f"{n}-{k}",
                                                        "option": "o1" if i % 2 else "o2"})
                                   for n, side in (("a", on_a), ("b", on_b)) for i, c in enumerate(side)
                                   for k in range(2)))
    assert sum(1 for v in votes if v["ok"]) == len(people)
    assert all(err(v) == "already_voted" for v in votes if not v["ok"])
    expected = {"o1": len(people) // 2, "o2": len(people) - len(people) // 2}

    def final(c, poll_id: str):
        evs = [e for e in c.events.get("poll:results", []) if e["poll_id"] == poll_id]
        return evs[-1] if evs else None

    for watcher in (on_a[0], on_b[0]):
        await eventually(lambda w=watcher: (r := final(w, pid)) and r["voters"] == len(people)
                         and r["results"]["counts"] == expected)
    elapsed = time.monotonic() - started
    broadcasts = [e for e in on_b[0].events["poll:results"] if e["poll_id"] == pid]
    # 24 submits, 6 votes: at most 4 broadcasts per second across both nodes (+ the leading edge)
    assert len(broadcasts) <= int(elapsed * 4) + 2 and len(broadcasts) < len(people), (len(broadcasts), elapsed)

    # changeable votes, changed concurrently on both nodes: the counters stay exact
    cid = await open_poll({"kind": "single", "question": "Change?", "options": ["A", "B", "C"],
                           "allow_change": True})
    await asyncio.gather(*(c.call("poll:vote", {"room": s, "poll_id": cid, "client_id": f"{n}{k}",
                                                "option": f"o{1 + (i + k) % 3}"})
                           for n, side in (("a", on_a), ("b", on_b)) for i, c in enumerate(side)
                           for k in range(3)))
    rows = await fetch(database_url, "SELECT choices[1] AS c, count(*) AS n FROM poll_votes "
                                     "WHERE poll_id = $1::uuid GROUP BY 1", cid)
    truth = {r["c"]: r["n"] for r in rows}
    assert sum(truth.values()) == len(people)
    for watcher in (on_a[2], on_b[3]):
        await eventually(lambda w=watcher: (r := final(w, cid)) and r["voters"] == len(people)
                         and {k: v for k, v in r["results"]["counts"].items() if v} == truth)
    for c in [*on_a, *on_b, mod]:
        await c.disconnect()
