"""Per-node sold-out flags: once the gate said sold_out, a node answers without the gate script,
still replays a repeated Idempotency-Key, and a seat coming back on one node is sellable at once on
every node (pub/sub invalidation, not the TTL: the TTL here is a minute)."""

from __future__ import annotations

from handlers.orders import TICKETS
from tests.support.api import Api
from tests.tickets.support import create_type, key, new_sale, order, wait_for


async def test_flags_answer_locally_and_are_invalidated_across_nodes(settings_factory, app_factory, http):
    settings = settings_factory(sold_out_cache_ms=60_000, hold_sweep_interval_seconds=3600)
    a_srv, b_srv = await app_factory(settings), await app_factory(settings)
    a, b = Api(str(a_srv.make_url("/")), http), Api(str(b_srv.make_url("/")), http)
    gate_a, gate_b = a_srv.app[TICKETS].gate, b_srv.app[TICKETS].gate
    for g in (gate_a, gate_b):
        assert await g.flags.wait_subscribed(5)
    sale = await new_sale(a, a_srv.app[TICKETS].orders.db)
    t = await create_type(a, sale, capacity=3, max_per_order=3)
    buyers = [await a.register() for _ in range(3)]
    first_key = key()
    status, first = await order(a, sale, buyers[0], [{"ticket_type_id": t["id"], "quantity": 2}], key=first_key)
    assert status == 201
    # One seat left: two seats are refused on both nodes, one seat is still sold.
    for api in (a, b):
        status, body = await order(api, sale, buyers[1], [{"ticket_type_id": t["id"], "quantity": 2}], key=key())
        assert status == 409 and body["error"]["code"] == "sold_out"
    calls = (gate_a.admit_calls, gate_b.admit_calls)
    for api in (a, b):  # answered from the flags: no gate script
        for i in range(5):
            status, body = await order(api, sale, buyers[1], [{"ticket_type_id": t["id"], "quantity": 2}],
                                       key=key() if i % 2 else None)
            assert status == 409 and body["error"]["code"] == "sold_out"
    assert (gate_a.admit_calls, gate_b.admit_calls) == calls
    assert gate_a.flags.hits >= 5 and gate_b.flags.hits >= 5
    # A repeated key is still the first answer, not sold_out (byte for byte), on either node.
    for api in (b, a):
        status, again = await order(api, sale, buyers[0], [{"ticket_type_id": t["id"], "quantity": 2}],
                                    key=first_key)
        assert status == 201 and again == first
    # The last seat (wanting no more than what was left goes to the gate).
    status, _ = await order(b, sale, buyers[2], [{"ticket_type_id": t["id"], "quantity": 1}], key=key())
    assert status == 201
    # Seats come back on node A (the buyer cancels): node B sells them at once.
    status, _ = await a.post(f"/api/orders/{first['id']}/cancel", user=buyers[0], json={})
    assert status == 200

    async def b_sells() -> bool:
        s, _ = await order(b, sale, buyers[1], [{"ticket_type_id": t["id"], "quantity": 2}], key=key())
        return s == 201

    assert await wait_for(b_sells, timeout=3)
