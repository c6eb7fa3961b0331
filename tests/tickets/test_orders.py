"""Ticket types and holds over HTTP on one node: contract shapes, rules, sold_out, free orders."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from handlers.orders import TICKETS
from tests.tickets.support import create_type, key, new_sale, order, types_by_id


async def test_ticket_type_contract_and_hold(api, db):
    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=5, max_per_order=4)
    assert t["capacity"] == 5 and t["sold"] == 0 and t["held"] == 0 and t["available"] == 5
    buyer = await api.register("Buyer")
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 3}], key=key())
    assert status == 201, body
    assert body["status"] == "held" and body["total_cents"] == 7500 and body["expires_at"]
    assert body["items"] == [{"ticket_type_id": t["id"], "quantity": 3, "unit_price_cents": 2500}]
    types = await types_by_id(api, sale)
    assert (types[t["id"]]["held"], types[t["id"]]["available"]) == (3, 2)
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 3}])
    assert status == 409 and body["error"]["code"] == "sold_out"
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}])
    assert status == 201
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1}])
    assert status == 409 and body["error"]["code"] == "sold_out"
    count = await db.fetchval("SELECT count(*) FROM orders WHERE event_id = $1::uuid", sale.event_id)
    assert count == 2


async def test_only_organizers_create_types_and_validation(api, db):
    sale = await new_sale(api, db)
    stranger = await api.register()
    status, body = await api.post(f"/api/events/{sale.event_id}/ticket-types", user=stranger,
                                  json={"name": "X", "kind": "general", "price_cents": 1, "currency": "EUR",
                                        "capacity": 1})
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await api.post(f"/api/events/{sale.event_id}/ticket-types", user=sale.organizer,
                                  json={"name": "X", "kind": "general", "price_cents": -1, "currency": "EUR",
                                        "capacity": 1})
    assert status == 422 and body["error"]["code"] == "validation_failed"
    status, body = await api.post(f"/api/events/{sale.event_id}/ticket-types", user=sale.organizer,
                                  json={"name": "X", "kind": "general", "price_cents": 1, "currency": "EUR",
                                        "capacity": 1, "sold": 5})
    assert status == 422


async def test_order_rules(api, db):
    sale = await new_sale(api, db)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    t = await create_type(api, sale, capacity=100, min_per_order=2, max_per_order=4)
    future = await create_type(api, sale, name="Later", sale_starts_at=later)
    hidden = await create_type(api, sale, name="Secret", visibility="hidden", access_code="OPEN-SESAME")
    buyer = await api.register()
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 5}])
    assert status == 422 and body["error"]["code"] == "limit_exceeded"
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1}])
    assert status == 422 and body["error"]["code"] == "limit_exceeded"
    status, body = await order(api, sale, buyer, [{"ticket_type_id": future["id"], "quantity": 1}])
    assert status == 409 and body["error"]["code"] == "sale_not_open"
    status, body = await order(api, sale, buyer, [{"ticket_type_id": hidden["id"], "quantity": 1}])
    assert status == 403 and body["error"]["code"] == "access_code_required"
    status, body = await order(api, sale, buyer, [{"ticket_type_id": hidden["id"], "quantity": 1}],
                               access_code="OPEN-SESAME")
    assert status == 201, body
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 0}])
    assert status == 422 and body["error"]["code"] == "validation_failed"
    # Hidden types are not listed to buyers without the code.
    status, listed = await api.get(f"/api/events/{sale.event_id}/ticket-types", user=buyer)
    assert hidden["id"] not in {x["id"] for x in listed}
    status, listed = await api.get(f"/api/events/{sale.event_id}/ticket-types",
                                   params={"access_code": "OPEN-SESAME"})
    assert hidden["id"] in {x["id"] for x in listed}
    # A draft event is invisible to buyers.
    draft = await new_sale(api, db, status="draft")
    dt = await create_type(api, draft)
    status, body = await order(api, draft, buyer, [{"ticket_type_id": dt["id"], "quantity": 1}])
    assert status == 404


async def test_shared_quota_limits_types_together(api, db):
    sale = await new_sale(api, db)
    a = await create_type(api, sale, name="Early A", kind="early_bird", capacity=5)
    b = await create_type(api, sale, name="Early B", kind="early_bird", capacity=5)
    status, quota = await api.post(f"/api/events/{sale.event_id}/ticket-quotas", user=sale.organizer,
                                   json={"name": "All early birds", "capacity": 6,
                                         "ticket_type_ids": [a["id"], b["id"]]})
    assert status == 201, quota
    buyer = await api.register()
    assert (await order(api, sale, buyer, [{"ticket_type_id": a["id"], "quantity": 4}]))[0] == 201
    status, body = await order(api, sale, buyer, [{"ticket_type_id": b["id"], "quantity": 3}])
    assert status == 409 and body["error"]["code"] == "sold_out"
    assert (await order(api, sale, buyer, [{"ticket_type_id": b["id"], "quantity": 2}]))[0] == 201
    row = await db.fetchrow("SELECT sold, held, capacity FROM ticket_quotas WHERE id = $1::uuid", quota["id"])
    assert dict(row) == {"sold": 0, "held": 6, "capacity": 6}


async def test_free_order_is_confirmed_with_tickets_and_attendee_role(api, db):
    sale = await new_sale(api, db)
    t = await create_type(api, sale, name="Free", kind="free", price_cents=0, capacity=3)
    buyer = await api.register()
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}], key=key())
    assert status == 201 and body["status"] == "confirmed" and "expires_at" not in body
    status, tickets = await api.get("/api/me/tickets", user=buyer)
    assert status == 200 and len(tickets) == 2
    assert {tk["status"] for tk in tickets} == {"valid"} and all(tk["code"].startswith("FY1.") for tk in tickets)
    assert set(tickets[0]) >= {"id", "event_id", "ticket_type_id", "code", "status"}
    role = await db.fetchval("SELECT role FROM event_members WHERE event_id = $1::uuid AND user_id = $2::uuid",
                             sale.event_id, buyer.id)
    assert role == "attendee"
    types = await types_by_id(api, sale)
    assert (types[t["id"]]["sold"], types[t["id"]]["held"]) == (2, 0)


async def test_many_buyers_one_node_exact_capacity(api, db):
    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=37, max_per_order=3)
    buyers = await asyncio.gather(*(api.register() for _ in range(6)))
    results = await asyncio.gather(*(
        order(api, sale, buyers[i % 6], [{"ticket_type_id": t["id"], "quantity": 1 + i % 3}], key=key())
        for i in range(60)))
    sold = sum(b["items"][0]["quantity"] for s, b in results if s == 201)
    assert {s for s, _ in results} == {201, 409}
    assert sold == 37
    row = await db.fetchrow("SELECT held, sold FROM ticket_types WHERE id = $1::uuid", t["id"])
    assert row["held"] == 37


async def test_a_gate_that_lets_too_many_through_is_overruled_by_postgresql(api, server, db):
    """The optimistic batch (type row locked only by its last statement) finds no seats left in
    PostgreSQL, rolls back and the lock-first batch answers sold_out; nothing is written and the
    gate is clamped to PostgreSQL's count."""
    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=2, max_per_order=4)
    buyer = await api.register()
    assert (await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}], key=key()))[0] == 201
    tickets = server.app[TICKETS]
    gate, type_key = tickets.gate, tickets.gate.type_key(uuid.UUID(t["id"]))
    await gate.redis.set(type_key, 5)  # as after a lost compensation: the gate believes 5 are left
    gate.flags.clear()
    optimistic_before = tickets.orders.optimistic_batches
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1}], key=key())
    assert status == 409 and body["error"]["code"] == "sold_out", body
    assert tickets.orders.optimistic_batches == optimistic_before  # it fell back
    assert await db.fetchval("SELECT count(*) FROM orders WHERE event_id = $1::uuid", sale.event_id) == 1
    assert await db.fetchval("SELECT sold + held FROM ticket_types WHERE id = $1::uuid", t["id"]) == 2
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE type = 'order.placed' AND event_id = $1::uuid",
                             sale.event_id) == 1
    assert int(await gate.redis.get(type_key)) == 0
