"""Cancelling an event cancels its open orders and refunds paid ones, once, through the relay."""

from __future__ import annotations

import pytest

from tests.tickets.support import Sale, confirm, create_type, key, order, start_shop, wait_for


@pytest.fixture
async def shop(aiohttp_server, app_factory, settings_factory, http):
    return await start_shop(aiohttp_server, app_factory, settings_factory, http)


async def test_event_cancellation_refunds_paid_and_cancels_held_orders(shop, http):
    organizer = await shop.api.register_2fa("Org")
    status, event = await shop.api.post("/api/events", user=organizer, json={
        "title": "Doomed conf", "starts_at": "2031-06-01T09:00:00Z", "ends_at": "2031-06-01T18:00:00Z",
        "timezone": "Europe/Berlin"})
    assert status == 201, event
    status, body = await shop.api.post(f"/api/events/{event['id']}/publish", user=organizer)
    assert status == 200, body
    sale = Sale(event["id"], organizer)
    t = await create_type(shop.api, sale, capacity=10)
    payer, holder = await shop.api.register("Payer"), await shop.api.register("Holder")
    _, paid = await order(shop.api, sale, payer, [{"ticket_type_id": t["id"], "quantity": 2}], key=key())
    _, payment = await shop.api.post(f"/api/orders/{paid['id']}/payments", user=payer)
    assert (await confirm(http, payment))[0] == 200

    async def status_of(user, order_id):
        return (await shop.api.get(f"/api/orders/{order_id}", user=user))[1]["status"]

    assert await wait_for(lambda: _eq(status_of(payer, paid["id"]), "paid"))
    _, held = await order(shop.api, sale, holder, [{"ticket_type_id": t["id"], "quantity": 1}], key=key())
    assert held["status"] == "held"

    status, body = await shop.api.post(f"/api/events/{event['id']}/cancel", user=organizer,
                                       json={"reason": "venue flooded"})
    assert status == 200, body
    assert await wait_for(lambda: _eq(status_of(holder, held["id"]), "cancelled"), timeout=20)
    assert await wait_for(lambda: _eq(status_of(payer, paid["id"]), "cancelled"), timeout=20)
    refunds = await shop.db.fetch("SELECT order_id::text, amount_cents FROM refunds")
    assert [(r["order_id"], r["amount_cents"]) for r in refunds] == [(paid["id"], paid["total_cents"])]
    status, tickets = await shop.api.get("/api/me/tickets", user=payer)
    assert status == 200 and not [tk for tk in tickets if tk["status"] == "valid"]
    status, types = await shop.api.get(f"/api/events/{event['id']}/ticket-types", user=organizer)
    assert status == 200 and types[0]["held"] == 0 and types[0]["sold"] == 0


async def _eq(awaitable, expected):
    return await awaitable == expected
