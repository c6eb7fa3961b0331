"""The waiting room over HTTP: arrival order, rate, one place per account, grants, bot limits."""

from __future__ import annotations

import asyncio
import time
import uuid

from domain.queue import GRANT_HEADER, Signer
from tests.conftest import TEST_JWT_SECRET
from tests.door.support import new_door
from tests.support.api import Api
from tests.tickets.support import create_type, key, order


async def _configure(api, door, type_id, **body):
    status, out = await api.put(f"/api/events/{door.event_id}/ticket-types/{type_id}/queue", user=door.organizer,
                                json=body)
    assert status == 200, out
    return out


async def _join(api, door, user, type_id=None, expect=200):
    status, body = await api.post(f"/api/events/{door.event_id}/queue", user=user,
                                  json={"ticket_type_id": type_id} if type_id else {})
    assert status == expect, body
    return body


async def _poll(api, door, user, token):
    status, body = await api.get(f"/api/events/{door.event_id}/queue/{token}", user=user)
    assert status == 200, body
    return body


async def test_queue_order_rate_one_place_and_grants(api, db):
    door = await new_door(api, db)
    t = await create_type(api, door.sale, name="Drop", capacity=100, max_per_order=2)
    stranger = await api.register()
    status, body = await api.put(f"/api/events/{door.event_id}/ticket-types/{t['id']}/queue", user=stranger,
                                 json={"enabled": True, "admit_per_minute": 60})
    assert status == 403
    # before the queue: open, buy directly
    buyers = await asyncio.gather(*(api.register(f"B{i}") for i in range(10)))
    assert (await _join(api, door, buyers[0], t["id"]))["status"] == "open"
    # a queue that admits (almost) nobody yet, so positions are exact
    cfg = await _configure(api, door, t["id"], enabled=True, admit_per_minute=1, grant_seconds=60)
    assert cfg["enabled"] and cfg["waiting"] == 0
    status, body = await order(api, door.sale, buyers[0], [{"ticket_type_id": t["id"], "quantity": 1}], key=key())
    assert status == 403 and body["error"]["code"] == "queue_required", body
    tokens = []
    for i, b in enumerate(buyers):
        joined = await _join(api, door, b)  # the only queued type: no need to name it
        assert joined["status"] == "waiting" and joined["position"] == i + 1, joined
        tokens.append(joined["token"])
    again = await _join(api, door, buyers[3], t["id"])  # one place per account
    assert again["position"] == 4 and again["token"] == tokens[3]
    assert (await _poll(api, door, buyers[3], tokens[3]))["position"] == 4
    status, _ = await api.get(f"/api/events/{door.event_id}/queue/{tokens[3]}", user=buyers[4])  # not your token
    assert status == 404
    status, _ = await api.get(f"/api/events/{door.event_id}/queue/{tokens[3][:-2]}xx", user=buyers[3])
    assert status == 404
    # now admit 300 per minute (5/s): arrival order, at that rate
    started = time.monotonic()
    await _configure(api, door, t["id"], enabled=True, admit_per_minute=300, grant_seconds=60)
    seen: dict[int, float] = {}
    while len(seen) < len(buyers) and time.monotonic() - started < 8:
        # Polled one at a time, last in line first: a buyer read later has had at least as many
        # admissions ahead of them as everyone read before, so at one instant's worth of truth the
        # admitted buyers form a prefix and the waiting positions strictly increase.
        states = [None] * len(buyers)
        for i in reversed(range(len(buyers))):
            states[i] = await _poll(api, door, buyers[i], tokens[i])
        admitted = [i for i, s in enumerate(states) if s["status"] == "admitted"]
        assert admitted == list(range(len(admitted))), states  # always a prefix of the arrival order
        elapsed = time.monotonic() - started
        assert len(admitted) <= 5 * elapsed + 5 + 1, (len(admitted), elapsed)  # the rate (+1 s of credit)
        for i in admitted:
            seen.setdefault(i, elapsed)
        waiting = [s["position"] for s in states if s["status"] == "waiting"]
        assert waiting == sorted(set(waiting)) and all(1 <= p <= len(buyers) for p in waiting), states
        await asyncio.sleep(0.2)
    assert len(seen) == len(buyers)
    assert seen[len(buyers) - 1] >= 0.9  # 10 buyers at 5/s take about 2 s, not an instant
    # an admitted buyer holds with the grant; nobody else's grant works
    first = await _poll(api, door, buyers[0], tokens[0])
    grant = first["grant"]
    first_key = key()
    status, first_body = await api.post(f"/api/events/{door.event_id}/orders", user=buyers[0],
                                        json={"items": [{"ticket_type_id": t["id"], "quantity": 1}]},
                                        headers={"Idempotency-Key": first_key, GRANT_HEADER: grant})
    assert status == 201, first_body
    # The buyer lost the answer and retries without the grant (or after it expired): the first
    # answer comes back, not queue_required, and no second order is made.
    status, body = await api.post(f"/api/events/{door.event_id}/orders", user=buyers[0],
                                  json={"items": [{"ticket_type_id": t["id"], "quantity": 1}]},
                                  headers={"Idempotency-Key": first_key})
    assert (status, body) == (201, first_body)
    status, body = await api.post(f"/api/events/{door.event_id}/orders", user=buyers[1],
                                  json={"items": [{"ticket_type_id": t["id"], "quantity": 1}]},
                                  headers={GRANT_HEADER: grant})
    assert status == 403 and body["error"]["code"] == "queue_required"
    signer = Signer(TEST_JWT_SECRET)
    eid, tid, uid = uuid.UUID(door.event_id), uuid.UUID(t["id"]), uuid.UUID(buyers[2].id)
    expired = signer.sign("G", eid, tid, uid, int(time.time() * 1000) - 1000)
    other_type = signer.sign("G", eid, uuid.UUID(door.free_type["id"]), uid, int(time.time() * 1000) + 60_000)
    forged = Signer("not the secret").sign("G", eid, tid, uid, int(time.time() * 1000) + 60_000)
    for bad in (expired, other_type, forged, "garbage"):
        status, body = await api.post(f"/api/events/{door.event_id}/orders", user=buyers[2],
                                      json={"items": [{"ticket_type_id": t["id"], "quantity": 1}]},
                                      headers={GRANT_HEADER: bad})
        assert status == 403 and body["error"]["code"] == "queue_required", bad
    # other types of the event are not queued
    status, body = await order(api, door.sale, buyers[2], [{"ticket_type_id": door.free_type["id"], "quantity": 1}],
                               key=key())
    assert status == 201
    status, cfg = await api.get(f"/api/events/{door.event_id}/ticket-types/{t['id']}/queue", user=door.organizer)
    assert cfg["waiting"] == 0 and cfg["admitted"] == len(buyers)
    # turning the queue off opens the sale
    await _configure(api, door, t["id"], enabled=False, admit_per_minute=300)
    status, body = await order(api, door.sale, buyers[5], [{"ticket_type_id": t["id"], "quantity": 1}], key=key())
    assert status == 201, body


async def test_queue_limits_per_ip_and_polls(settings_factory, app_factory, http):
    srv = await app_factory(settings_factory(argon2_time_cost=1, argon2_memory_kib=8192, queue_polls_per_minute=3))
    api = Api(str(srv.make_url("/")), http)
    from handlers.api import CORE

    door = await new_door(api, srv.app[CORE].db)
    t = await create_type(api, door.sale, name="Drop", capacity=100)
    await _configure(api, door, t["id"], enabled=True, admit_per_minute=1, max_per_ip=2)
    a, b, c = await asyncio.gather(*(api.register() for _ in range(3)))
    joined = await _join(api, door, a)
    await _join(api, door, b)
    body = await _join(api, door, c, expect=429)
    assert body["error"]["code"] == "rate_limited"
    await _poll(api, door, a, joined["token"])
    await _poll(api, door, a, joined["token"])
    status, body = await api.get(f"/api/events/{door.event_id}/queue/{joined['token']}", user=a)
    assert status == 429 and body["error"]["code"] == "rate_limited"


async def test_admission_and_positions_arrive_live_in_the_user_room(server, api, db):
    from tests.support.live import LiveClient

    door = await new_door(api, db)
    t = await create_type(api, door.sale, name="Drop", capacity=100)
    await _configure(api, door, t["id"], enabled=True, admit_per_minute=1)
    first, second = await api.register(), await api.register()
    clients = []
    for user in (first, second):
        c = LiveClient(str(server.make_url("/")), user.access_token)
        await c.connect()
        assert (await c.call("room:join", {"room": f"user:{user.id}"}))["ok"]
        clients.append(c)
    try:
        await _join(api, door, first)
        await _join(api, door, second)
        await _configure(api, door, t["id"], enabled=True, admit_per_minute=60)  # one per second
        admitted = await clients[0].wait_for("queue:admitted", timeout=10)
        assert admitted["room"] == f"user:{first.id}" and admitted["ticket_type_id"] == t["id"]
        position = await clients[1].wait_for("queue:position", timeout=10)
        assert position["position"] == 1 and position["ticket_type_id"] == t["id"]
        status, body = await api.post(f"/api/events/{door.event_id}/orders", user=first,
                                      json={"items": [{"ticket_type_id": t["id"], "quantity": 1}]},
                                      headers={GRANT_HEADER: admitted["grant"]})
        assert status == 201, body
        assert "queue:admitted" not in clients[1].events or all(
            e["room"] == f"user:{second.id}" for e in clients[1].events["queue:admitted"])
    finally:
        for c in clients:
            await c.disconnect()
