"""Two node processes run the admitter at once: the admission rate stays the configured global one,
in arrival order, whichever node buyers talk to."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.door.support import Door
from tests.support.api import Api
from tests.tickets.support import Sale, create_event, create_type

pytestmark = pytest.mark.multinode


async def test_admission_rate_is_global_across_nodes(nodes, http, database_url):
    env = {"FOYER_QUEUE_TICK_MS": "100", "FOYER_ARGON2_TIME_COST": "1", "FOYER_ARGON2_MEMORY_KIB": "8192"}
    a, b = await asyncio.gather(nodes.start(env=env), nodes.start(env=env))
    apis = [Api(a.url, http), Api(b.url, http)]
    organizer = await apis[0].register("Org")
    sale = Sale(await create_event(database_url, organizer), organizer)
    t = await create_type(apis[0], sale, name="Drop", capacity=100)
    door = Door(apis[0], sale, t)
    path = f"/api/events/{sale.event_id}/ticket-types/{t['id']}/queue"
    status, _ = await apis[0].put(path, user=organizer, json={"enabled": True, "admit_per_minute": 1})
    assert status == 200
    buyers = [await apis[i % 2].register() for i in range(24)]
    tokens = []
    for i, buyer in enumerate(buyers):  # joins alternate between the nodes
        status, body = await apis[i % 2].post(f"/api/events/{door.event_id}/queue", user=buyer, json={})
        assert status == 200 and body["position"] == i + 1, body
        tokens.append(body["token"])
    status, _ = await apis[1].put(path, user=organizer, json={"enabled": True, "admit_per_minute": 240})  # 4/s
    started = time.monotonic()
    counts = []
    while time.monotonic() - started < 3.0:
        await asyncio.sleep(0.25)
        states = await asyncio.gather(*(apis[i % 2].get(f"/api/events/{door.event_id}/queue/{tok}", user=buyers[i])
                                        for i, tok in enumerate(tokens)))
        admitted = [i for i, (_, s) in enumerate(states) if s["status"] == "admitted"]
        assert admitted == list(range(len(admitted)))
        counts.append((time.monotonic() - started, len(admitted)))
    elapsed, final = counts[-1]
    # one global rate: about 4/s (+ at most one second of credit); two independent admitters would
    # admit twice as many
    assert 4 * (elapsed - 1.0) - 1 <= final <= 4 * elapsed + 4 + 1, counts
