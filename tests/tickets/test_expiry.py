"""Holds expire and return their seats exactly once: the sweeper on every node, and lazily."""

from __future__ import annotations

import asyncio

from tests.tickets.support import create_type, key, new_sale, order


async def _poll(fn, deadline_s=10.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        value = await fn()
        if value or loop.time() > end:
            return value
        await asyncio.sleep(0.05)


async def test_sweeper_returns_seats_exactly_once_across_nodes(settings_factory, app_factory, http):
    from handlers.api import CORE
    from tests.support.api import Api

    s = settings_factory(hold_seconds=1, hold_sweep_interval_seconds=0.05)
    # Two in-process nodes sweeping the same database concurrently.
    a, b = await app_factory(s), await app_factory(s)
    api = Api(str(a.make_url("/")), http)
    db = a.app[CORE].db
    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=4, max_per_order=4)
    buyers = [await api.register() for _ in range(2)]
    for buyer in buyers:
        assert (await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}], key=key()))[0] == 201
    assert (await order(api, sale, buyers[0], [{"ticket_type_id": t["id"], "quantity": 1}]))[0] == 409

    async def all_expired():
        return await db.fetchval("SELECT count(*) = 2 FROM orders WHERE status = 'expired'")

    assert await _poll(all_expired)
    row = await db.fetchrow("SELECT held, sold FROM ticket_types WHERE id = $1::uuid", t["id"])
    assert (row["held"], row["sold"]) == (0, 0)  # returned once, not twice (CHECK would refuse < 0)
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE type = 'order.expired'") == 2
    # The gate learned it too: seats can be held again, up to capacity only.
    status, _ = await order(api, sale, buyers[1], [{"ticket_type_id": t["id"], "quantity": 4}], key=key())
    assert status == 201
    assert (await order(api, sale, buyers[0], [{"ticket_type_id": t["id"], "quantity": 1}]))[0] == 409
    assert b  # second node kept sweeping the whole time


async def test_lazy_expiry_on_read(settings_factory, app_factory, http):
    from handlers.api import CORE
    from tests.support.api import Api

    srv = await app_factory(settings_factory(hold_seconds=1, hold_sweep_interval_seconds=3600))
    api = Api(str(srv.make_url("/")), http)
    db = srv.app[CORE].db
    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=2)
    buyer = await api.register()
    status, placed = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}])
    assert status == 201
    await asyncio.sleep(1.1)
    status, body = await api.get(f"/api/orders/{placed['id']}", user=buyer)
    assert status == 200 and body["status"] == "expired"
    assert await db.fetchval("SELECT held FROM ticket_types WHERE id = $1::uuid", t["id"]) == 0
    status, body = await api.get(f"/api/orders/{placed['id']}", user=buyer)
    assert body["status"] == "expired"
    assert await db.fetchval("SELECT held FROM ticket_types WHERE id = $1::uuid", t["id"]) == 0


async def test_buyer_cancels_held_order(api, db):
    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=2)
    buyer = await api.register()
    _, placed = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}])
    status, body = await api.post(f"/api/orders/{placed['id']}/cancel", user=buyer, json={})
    assert status == 200 and body["status"] == "cancelled"
    status, body = await api.post(f"/api/orders/{placed['id']}/cancel", user=buyer, json={})
    assert status == 409 and body["error"]["code"] == "invalid_state"
    assert await db.fetchval("SELECT held FROM ticket_types WHERE id = $1::uuid", t["id"]) == 0
    assert (await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}]))[0] == 201
    stranger = await api.register()
    status, _ = await api.get(f"/api/orders/{placed['id']}", user=stranger)
    assert status == 404
