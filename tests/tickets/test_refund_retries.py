"""Refunds the payment processor could not take are retried in the background (same idempotency key,
so the money goes back once), and refunds it refuses are failed and shown to the organizers."""

from __future__ import annotations

from integrations.payments.sandbox import STATE
from tests.tickets.support import Sale, confirm, create_event, create_type, order, start_shop, wait_for


async def _paid_order(shop, http, sale, t, buyer, quantity=2):
    _, placed = await order(shop.api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": quantity}])
    status, payment = await shop.api.post(f"/api/orders/{placed['id']}/payments", user=buyer)
    assert status == 201, payment
    await confirm(http, payment)

    async def paid() -> bool:
        return (await shop.api.get(f"/api/orders/{placed['id']}", user=buyer))[1]["status"] == "paid"

    assert await wait_for(paid)
    return placed


async def test_transient_failures_retried_then_permanent_failure_surfaced(aiohttp_server, app_factory,
                                                                         settings_factory, http):
    shop = await start_shop(aiohttp_server, app_factory, settings_factory, http, refund_retry_interval_seconds=0.1,
                            refund_backoff_base_seconds=0.1, refund_backoff_cap_seconds=0.3, refund_max_attempts=4)
    organizer = await shop.api.register_2fa("Org")
    sale = Sale(await create_event(shop.db, organizer), organizer)
    t = await create_type(shop.api, sale, capacity=10)
    buyer = await shop.api.register()
    first = await _paid_order(shop, http, sale, t, buyer)
    second = await _paid_order(shop, http, sale, t, buyer)
    sandbox = shop.sandbox_app[STATE]

    # 1. The processor is down twice (503, then 429), then takes the refund.
    sandbox["faults"]["/v1/refunds"] = [(503, "api_error"), (429, "rate_limit")]
    status, body = await shop.api.post(f"/api/orders/{first['id']}/refunds", user=sale.organizer, json={})
    assert status == 200 and body["status"] == "refunded"  # seats and tickets are back at once
    refund = await shop.db.fetchrow("SELECT status, attempts, last_error FROM refunds")
    assert refund["status"] == "pending" and refund["attempts"] == 1 and "unavailable" in refund["last_error"]

    async def succeeded() -> bool:
        return await shop.db.fetchval("SELECT status FROM refunds") == "succeeded"

    assert await wait_for(succeeded, timeout=10)
    assert await shop.db.fetchval("SELECT attempts FROM refunds") == 3
    assert sandbox["faults"]["/v1/refunds"] == []
    money_back = [r for r in sandbox["refunds"].values() if r["amount"] == first["total_cents"]]
    assert len(money_back) == 1  # retried under one idempotency key: refunded once

    # 2. The processor refuses for good: failed at once, with the reason, for the organizers only.
    sandbox["faults"]["/v1/refunds"] = [(400, "charge_disputed")]
    status, _ = await shop.api.post(f"/api/orders/{second['id']}/refunds", user=sale.organizer, json={})
    assert status == 200
    status, failed = await shop.api.get(f"/api/events/{sale.event_id}/refunds?status=failed", user=sale.organizer)
    assert status == 200 and len(failed) == 1, failed
    assert failed[0]["order_id"] == second["id"] and failed[0]["status"] == "failed"
    assert "charge_disputed" in failed[0]["last_error"] and failed[0]["amount_cents"] == second["total_cents"]
    fact = await shop.db.fetchval("SELECT data FROM outbox WHERE type = 'refund.failed'")
    assert fact is not None and "charge_disputed" in str(fact)
    status, _ = await shop.api.get(f"/api/events/{sale.event_id}/refunds", user=buyer)
    assert status in (403, 404)

    # 3. Transient failures beyond the attempt budget also end as failed (not pending forever).
    third = await _paid_order(shop, http, sale, t, buyer)
    sandbox["faults"]["/v1/refunds"] = [(502, "bad_gateway")] * 10
    status, _ = await shop.api.post(f"/api/orders/{third['id']}/refunds", user=sale.organizer, json={})
    assert status == 200

    async def gave_up() -> bool:
        return await shop.db.fetchval("SELECT count(*) FROM refunds WHERE status = 'failed'") == 2

    assert await wait_for(gave_up, timeout=10)
    row = await shop.db.fetchrow("SELECT attempts, last_error FROM refunds r JOIN orders o ON o.id = r.order_id "
                                 "WHERE o.id = $1::uuid", third["id"])
    assert row["attempts"] == 4 and row["last_error"].startswith("gave up after 4 attempts")
