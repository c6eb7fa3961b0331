"""Two node processes, two gates, one ticket, the same instant: exactly one `ok`."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.door.support import Door, add_member, nonce, now_iso
from tests.support.api import Api
from tests.tickets.support import Sale, create_event, create_type, key, order

pytestmark = pytest.mark.multinode


async def test_two_gates_two_nodes_exactly_one_ok(nodes, http, database_url):
    a, b = await asyncio.gather(nodes.start(), nodes.start())
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
