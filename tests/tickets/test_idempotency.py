"""Idempotency-Key on orders (same transaction as the order) and the generic route option."""

from __future__ import annotations

import asyncio

from tests.tickets.support import create_type, key, new_sale, order


async def test_repeat_returns_first_response_byte_for_byte(api, db, http, server):
    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=3)
    buyer = await api.register()
    k = key()
    items = [{"ticket_type_id": t["id"], "quantity": 2}]
    url = server.make_url(f"/api/events/{sale.event_id}/orders")
    headers = {**buyer.headers, "Idempotency-Key": k}
    async with http.post(url, json={"items": items}, headers=headers) as r1:
        first = (r1.status, await r1.read())
    async with http.post(url, json={"items": items}, headers=headers) as r2:
        second = (r2.status, await r2.read())
    assert first[0] == 201 and first == second
    # Still replayed once the type is sold out (the gate knows the key was used).
    other = await api.register()
    assert (await order(api, sale, other, [{"ticket_type_id": t["id"], "quantity": 1}]))[0] == 201
    assert (await order(api, sale, other, [{"ticket_type_id": t["id"], "quantity": 1}]))[0] == 409
    async with http.post(url, json={"items": items}, headers=headers) as r3:
        assert (r3.status, await r3.read()) == first
    assert await db.fetchval("SELECT count(*) FROM orders WHERE user_id = $1::uuid", buyer.id) == 1


async def test_same_key_different_body_is_422(api, db):
    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=10)
    buyer = await api.register()
    k = key()
    assert (await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1}], key=k))[0] == 201
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}], key=k)
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    # Keys are per user: another buyer may use the same key.
    other = await api.register()
    assert (await order(api, sale, other, [{"ticket_type_id": t["id"], "quantity": 2}], key=k))[0] == 201


async def test_concurrent_duplicates_make_one_order(api, db):
    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=50)
    buyer = await api.register()
    k = key()
    results = await asyncio.gather(*(order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1}], key=k)
                                     for _ in range(12)))
    statuses = [s for s, _ in results]
    assert set(statuses) <= {201, 409} and 201 in statuses and 409 in statuses, statuses
    assert all(b["error"]["code"] == "idempotency_in_progress" for s, b in results if s == 409)
    assert len({b["id"] for s, b in results if s == 201}) == 1
    assert await db.fetchval("SELECT count(*) FROM orders WHERE user_id = $1::uuid", buyer.id) == 1
    assert await db.fetchval("SELECT held FROM ticket_types WHERE id = $1::uuid", t["id"]) == 1


async def test_replay_after_redis_flush_uses_postgres(api, db, server):
    from handlers.api import CORE

    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=1)
    buyer = await api.register()
    k = key()
    status, first = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1}], key=k)
    assert status == 201
    core = server.app[CORE]
    keys = [x async for x in core.redis.scan_iter(match=core.keys("*"))]
    await core.redis.delete(*keys)
    status, again = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1}], key=k)
    assert (status, again) == (201, first)
    other = await api.register()
    status, body = await order(api, sale, other, [{"ticket_type_id": t["id"], "quantity": 1}], key=key())
    assert status == 409 and body["error"]["code"] == "sold_out"


async def test_generic_route_option_on_ticket_type_creation(api, db):
    sale = await new_sale(api, db)
    k = key()
    body = {"name": "VIP", "kind": "vip", "price_cents": 9900, "currency": "EUR", "capacity": 5}
    headers = {"Idempotency-Key": k}
    s1, b1 = await api.post(f"/api/events/{sale.event_id}/ticket-types", user=sale.organizer, json=body, headers=headers)
    s2, b2 = await api.post(f"/api/events/{sale.event_id}/ticket-types", user=sale.organizer, json=body, headers=headers)
    assert s1 == s2 == 201 and b1 == b2
    s3, b3 = await api.post(f"/api/events/{sale.event_id}/ticket-types", user=sale.organizer,
                            json={**body, "capacity": 6}, headers=headers)
    assert s3 == 422 and b3["error"]["code"] == "idempotency_key_reused"
    assert await db.fetchval("SELECT count(*) FROM ticket_types WHERE event_id = $1::uuid", sale.event_id) == 1
    # A failed request is not recorded: fixing the body and retrying with the same key works.
    k2 = key()
    s4, _ = await api.post(f"/api/events/{sale.event_id}/ticket-types", user=sale.organizer,
                           json={**body, "price_cents": -5}, headers={"Idempotency-Key": k2})
    s5, _ = await api.post(f"/api/events/{sale.event_id}/ticket-types", user=sale.organizer,
                           json=body, headers={"Idempotency-Key": k2})
    assert (s4, s5) == (422, 201)
