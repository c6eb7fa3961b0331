"""Two node processes: two gates scanning one ticket at the same instant get exactly one `ok`;
buyers racing for the same seats on both nodes never get one seat twice."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from tests.door.support import Door, add_member, nonce, now_iso
from tests.support.api import Api
from tests.tickets.support import Sale, create_event, create_type, key, order

pytestmark = pytest.mark.multinode


async def test_two_nodes_one_ok_per_ticket_and_no_seat_sold_twice(nodes, http, database_url):
    env = {"FOYER_SALE_CACHE_SECONDS": "0.2"}  # other nodes see new ticket types and seat maps at once
    a, b = await asyncio.gather(nodes.start(env=env), nodes.start(env=env))
    api_a, api_b = Api(a.url, http), Api(b.url, http)
    organizer = await api_a.register("Org")
    sale = Sale(await create_event(database_url, organizer), organizer)
    free = await create_type(api_a, sale, name="Free", kind="free", price_cents=0, capacity=50, max_per_order=10)
    door = Door(api_a, sale, free)
    scanner_a, scanner_b = await asyncio.gather(api_a.register("Gate A"), api_b.register("Gate B"))
    await add_member(api_a, door, scanner_a, "staff")
    await add_member(api_a, door, scanner_b, "staff")
    buyer = await api_b.register()
    for _ in range(2):
        status, body = await order(api_b, sale, buyer, [{"ticket_type_id": free["id"], "quantity": 10}], key=key())
        assert status == 201, body
    status, tickets = await api_b.get("/api/me/tickets", user=buyer)
    assert len(tickets) == 20

    async def at_gate(api: Api, user, code: str, gate: str, n: str) -> dict:
        status, body = await api.post(f"/api/events/{sale.event_id}/checkins", user=user,
                                      json={"code": code, "gate": gate, "nonce": n, "scanned_at": now_iso()})
        assert status == 200, body
        return body

    calls = []
    for t in tickets:
        calls.append(at_gate(api_a, scanner_a, t["code"], "A", nonce()))
        calls.append(at_gate(api_b, scanner_b, t["code"], "B", nonce()))
    results = await asyncio.gather(*calls)
    for i in range(len(tickets)):
        pair = results[2 * i: 2 * i + 2]
        assert sorted(r["result"] for r in pair) == ["already_checked_in", "ok"], pair
        winner = next(r for r in pair if r["result"] == "ok")
        loser = next(r for r in pair if r["result"] != "ok")
        assert loser["first_scan"]["gate"] == winner["gate"] and loser["first_scan"]["nonce"] == winner["nonce"]
    # one nonce retried on both nodes at once: one scan, one answer
    t_last = tickets[-1]
    n = nonce()
    out = await asyncio.gather(*(at_gate(api, user, t_last["code"], "A", n)
                                 for api, user in ((api_a, scanner_a), (api_b, scanner_a)) * 3))
    assert all(o == out[0] for o in out)
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM checkin_entries") == 20
        assert await conn.fetchval("SELECT count(*) FROM checkin_scans") == 41
        facts = await conn.fetchval("SELECT count(*) FROM outbox WHERE type = 'ticket.checked_in'")
        assert facts == 20
        counted = await conn.fetchval("SELECT sum(n) FROM checkin_gate_counts WHERE result = 'ok'")
        assert counted == 20
    finally:
        await conn.close()
    status, stats = await api_b.get(f"/api/events/{sale.event_id}/checkins/stats", user=organizer)
    assert stats["inside"] == 20 and stats["checked_in"] == 20
    assert sum(g["entries"] for g in stats["gates"]) == 20

    # --- seats: buyers on both nodes race for overlapping seats (picked or best available) ---
    seated = await create_type(api_a, sale, name="Seated", capacity=1, max_per_order=3)
    status, seat_map = await api_a.put(f"/api/events/{sale.event_id}/ticket-types/{seated['id']}/seat-map",
                                       user=organizer,
                                       json={"sections": [{"name": "S", "rows": [{"label": "A", "seats": 8},
                                                                                 {"label": "B", "seats": 8}]}]})
    assert status == 200, seat_map
    ids = [s["id"] for row in seat_map["sections"][0]["rows"] for s in row["seats"]]
    racers = await asyncio.gather(*(api_b.register() for _ in range(4)))
    rng = random.Random(11)
    await asyncio.sleep(0.3)  # past the sale cache TTL of both nodes

    async def race(i: int):
        items = [{"ticket_type_id": seated["id"], "quantity": 2}]
        if i % 2:
            items[0]["seat_ids"] = rng.sample(ids[:6], 2)  # crowd the front of row A
        return await order((api_a, api_b)[i % 2], sale, racers[i % 4], items, key=key())

    results = await asyncio.gather(*(race(i) for i in range(30)))
    assert {s for s, _ in results} <= {201, 409}, [b for s, b in results if s not in (201, 409)][:3]
    sold = [seat["id"] for s, b in results if s == 201 for seat in b["items"][0]["seats"]]
    assert len(sold) == len(set(sold)) and sold  # every seat at most once
    # Racing buyers were refused while others' seats were in flight (the gate counts them until
    # the batch settles); once settled, the rest sells out by best available, to the last seat.
    while True:
        status, body = await order(api_b, sale, racers[0], [{"ticket_type_id": seated["id"], "quantity": 1}], key=key())
        if status != 201:
            assert body["error"]["code"] == "sold_out", body
            break
        sold.append(body["items"][0]["seats"][0]["id"])
    assert sorted(sold) == sorted(ids)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT seat_id FROM seat_assignments WHERE released_at IS NULL")
        assert sorted(str(r["seat_id"]) for r in rows) == sorted(sold)
        assert await conn.fetchval("SELECT held FROM ticket_types WHERE id = $1::uuid", seated["id"]) == 16
    finally:
        await conn.close()
