"""Once a type is sold out, `sold_out` is answered without PostgreSQL: proven by taking PostgreSQL
away from the node (the database refuses every connection, even a superuser's, and its connections are terminated) and asking again."""

from __future__ import annotations

import asyncio

import asyncpg

from handlers.api import CORE
from tests.support.api import Api
from tests.tickets.support import create_type, key, new_sale, order


async def test_sold_out_needs_no_database(settings_factory, app_factory, http, test_services):
    srv = await app_factory(settings_factory(sale_cache_seconds=120, hold_sweep_interval_seconds=3600))
    api = Api(str(srv.make_url("/")), http)
    db = srv.app[CORE].db
    sale = await new_sale(api, db)
    t = await create_type(api, sale, capacity=2)
    buyers = [await api.register() for _ in range(3)]
    assert (await order(api, sale, buyers[0], [{"ticket_type_id": t["id"], "quantity": 2}], key=key()))[0] == 201
    assert (await order(api, sale, buyers[1], [{"ticket_type_id": t["id"], "quantity": 1}]))[0] == 409
    dbname = await db.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(test_services.admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        killed = await admin.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = $1 AND pid <> pg_backend_pid()", dbname)
        assert killed > 0
        for _ in range(100):  # terminated backends leave a moment later
            if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", dbname):
                break
            await asyncio.sleep(0.02)
        # Control: anything that needs PostgreSQL now fails ...
        status, _ = await api.get(f"/api/events/{sale.event_id}/ticket-types", user=buyers[2])
        assert status >= 500
        # ... but buyers still get a clean sold_out, with and without Idempotency-Keys.
        for i in range(20):
            status, body = await order(api, sale, buyers[i % 3], [{"ticket_type_id": t["id"], "quantity": 1}],
                                       key=key() if i % 2 else None)
            assert status == 409 and body["error"]["code"] == "sold_out", body
    finally:
        await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        await admin.close()
