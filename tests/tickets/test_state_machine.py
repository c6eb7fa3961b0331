"""Property-based: random sequences of hold / pay / expire / cancel / refund against a model.

Hypothesis drives a RuleBasedStateMachine in a worker thread; each rule performs real HTTP calls
(and, for expiry, moves the hold's deadline into the past in PostgreSQL, then reads the order:
lazy expiry) on the test's event loop, then compares PostgreSQL and the API with the model."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from tests.tickets.support import Sale, confirm, create_event, create_type, key, order, start_shop, wait_for

CAPACITY = 5


@dataclass
class ModelOrder:
    id: str
    qty: int
    buyer: object
    state: str = "held"


async def test_order_lifecycle_matches_model(aiohttp_server, app_factory, settings_factory, http):
    shop = await start_shop(aiohttp_server, app_factory, settings_factory, http, hold_sweep_interval_seconds=3600)
    organizer = await shop.api.register_2fa("Org")
    sale = Sale(await create_event(shop.db, organizer), organizer)
    ttype = await create_type(shop.api, sale, capacity=CAPACITY, max_per_order=3, price_cents=1000)
    buyers = [await shop.api.register(f"B{i}") for i in range(2)]
    loop = asyncio.get_running_loop()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    async def state(order_id, buyer):
        return (await shop.api.get(f"/api/orders/{order_id}", user=buyer))[1]["status"]

    class Machine(RuleBasedStateMachine):
        held_orders = Bundle("held")
        paid_orders = Bundle("paid")

        def __init__(self):
            super().__init__()
            # Each example starts from an empty type: close what the previous example left.
            run(shop.db.execute("UPDATE orders SET status = 'cancelled' WHERE status IN ('held', 'paid')"))
            run(shop.db.execute("UPDATE tickets SET status = 'void'"))
            run(shop.db.execute("UPDATE ticket_types SET held = 0, sold = 0"))
            gate = shop.server.app[__import__("handlers.orders", fromlist=["TICKETS"]).TICKETS].gate
            run(gate.invalidate(__import__("uuid").UUID(sale.event_id)))
            self.held = 0
            self.sold = 0

        @rule(target=held_orders, qty=st.integers(1, 3), who=st.integers(0, 1))
        def hold(self, qty, who):
            status, body = run(order(shop.api, sale, buyers[who], [{"ticket_type_id": ttype["id"], "quantity": qty}],
                                     key=key()))
            if qty > CAPACITY - self.held - self.sold:
                assert status == 409 and body["error"]["code"] == "sold_out", body
                return None
            assert status == 201 and body["status"] == "held", body
            self.held += qty
            return ModelOrder(body["id"], qty, buyers[who])

        @rule(target=paid_orders, o=consumes(held_orders))
        def pay(self, o):
            if o is None:
                return None
            _, payment = run(shop.api.post(f"/api/orders/{o.id}/payments", user=o.buyer))
            assert run(confirm(http, payment))[0] == 200

            async def paid():
                return await state(o.id, o.buyer) == "paid"

            assert run(wait_for(paid))
            self.held -= o.qty
            self.sold += o.qty
            return o

        @rule(o=consumes(held_orders))
        def expire(self, o):
            if o is None:
                return
            run(shop.db.execute("UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1::uuid", o.id))
            assert run(state(o.id, o.buyer)) == "expired"
            self.held -= o.qty

        @rule(o=consumes(held_orders))
        def cancel(self, o):
            if o is None:
                return
            status, body = run(shop.api.post(f"/api/orders/{o.id}/cancel", user=o.buyer, json={}))
            assert status == 200 and body["status"] == "cancelled", body
            self.held -= o.qty

        @rule(o=consumes(paid_orders))
        def refund(self, o):
            if o is None:
                return
            status, body = run(shop.api.post(f"/api/orders/{o.id}/refunds", user=organizer, json={}))
            assert status == 200 and body["status"] == "refunded", body
            self.sold -= o.qty

        @invariant()
        def counters_match_model(self):
            row = run(shop.db.fetchrow("SELECT held, sold FROM ticket_types WHERE id = $1::uuid", ttype["id"]))
            assert (row["held"], row["sold"]) == (self.held, self.sold)
            valid = run(shop.db.fetchval("SELECT count(*) FROM tickets WHERE status = 'valid'"))
            assert valid == self.sold

    Machine.TestCase.settings = settings(max_examples=25, stateful_step_count=10, deadline=None,
                                         suppress_health_check=list(HealthCheck))
    await asyncio.to_thread(Machine.TestCase().runTest)


pytestmark = pytest.mark.timeout(120)
