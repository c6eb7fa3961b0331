"""Gap: a node killed (SIGKILL) between admitting a hold and committing it leaves the gate short of
seats; the reconciler finds the drift against PostgreSQL and makes the seats sellable again."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
import redis.asyncio as aioredis

from handlers.orders import TICKETS
from tests.support.api import Api
from tests.tickets.support import Sale, create_event, create_type, key, order, wait_for

pytestmark = pytest.mark.multinode


async def test_node_killed_between_admission_and_commit(nodes, settings_factory, app_factory, http, database_url,
                                                        test_services, redis_prefix):
    # Node A (a real process) admits holds but waits 30 s before committing them; B is healthy and
    # runs the reconciler often.
    node_a = await nodes.start(env={"FOYER_TEST_HOLD_COMMIT_DELAY_MS": "30000",
                                    "FOYER_GATE_RECONCILE_INTERVAL_SECONDS": "3600"})
    b_srv = await app_factory(settings_factory(gate_reconcile_interval_seconds=0.3, sold_out_cache_ms=60_000))
    a, b = Api(node_a.url, http), Api(str(b_srv.make_url("/")), http)
    organizer = await b.register("Org")
    sale = Sale(await create_event(database_url, organizer), organizer)
    t = await create_type(b, sale, capacity=4, max_per_order=4)
    buyers = [await b.register() for _ in range(2)]
    redis = aioredis.Redis.from_url(test_services.redis_url)
    counter = f"{redis_prefix}tix:gate:t:{t['id']}"
    try:
        # A admits 3 seats (the counter drops) and then dies before its transaction.
        stuck = asyncio.create_task(order(a, sale, buyers[0], [{"ticket_type_id": t["id"], "quantity": 3}], key=key()))

        async def admitted() -> bool:
            value = await redis.get(counter)
            return value is not None and int(value) == 1

        assert await wait_for(admitted, timeout=10)
        node_a.kill()
        await node_a.process.wait()
        with pytest.raises(aiohttp.ClientError):
            await stuck
        # The gate now believes 1 seat is left; PostgreSQL has 4. B answers sold_out for 2 ...
        status, body = await order(b, sale, buyers[1], [{"ticket_type_id": t["id"], "quantity": 2}], key=key())
        assert status == 409 and body["error"]["code"] == "sold_out"
        assert await b_srv.app[TICKETS].gate.load_available(uuid.UUID(sale.event_id)) == ({uuid.UUID(t["id"]): 4}, {})

        # ... until the reconciler has seen the same drift twice and repaired it.
        async def sellable() -> bool:
            s, _ = await order(b, sale, buyers[1], [{"ticket_type_id": t["id"], "quantity": 2}], key=key())
            return s == 201

        assert await wait_for(sellable, timeout=10)
        assert int(await redis.get(counter)) == 2
        held = await b_srv.app[TICKETS].orders.db.fetchval(
            "SELECT held FROM ticket_types WHERE id = $1::uuid", t["id"])
        assert held == 2  # nothing of the dead node's hold reached PostgreSQL
    finally:
        await redis.aclose()
