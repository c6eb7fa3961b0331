"""Payments through the sandbox processor over HTTP: pay, decline, webhooks (replay, tamper,
out of order), late payments, refunds, cancellations; tickets, transfer, QR."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from domain.tickets.codes import unb64u, verify_code
from integrations.payments.sandbox import STATE
from integrations.payments.signing import sign_header
from tests.tickets.support import (
    SANDBOX_SECRET,
    Sale,
    confirm,
    create_event,
    create_type,
    key,
    order,
    start_shop,
    wait_for,
)


@pytest.fixture
async def shop(aiohttp_server, app_factory, settings_factory, http):
    return await start_shop(aiohttp_server, app_factory, settings_factory, http)


async def _sale(shop, *, capacity=5, two_factor=False, **kw):
    organizer = await (shop.api.register_2fa("Org") if two_factor else shop.api.register("Org"))
    sale = Sale(await create_event(shop.db, organizer), organizer)
    t = await create_type(shop.api, sale, capacity=capacity, **kw)
    return sale, t


async def _status(shop, user, order_id):
    return (await shop.api.get(f"/api/orders/{order_id}", user=user))[1]["status"]


async def _pay(shop, http, buyer, placed, card="4242424242424242"):
    status, payment = await shop.api.post(f"/api/orders/{placed['id']}/payments", user=buyer)
    assert status == 201, payment
    return payment, await confirm(http, payment, card)


async def test_pay_issues_signed_tickets_once(shop, http):
    sale, t = await _sale(shop)
    buyer = await shop.api.register()
    _, placed = await order(shop.api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}], key=key())
    payment, (cstatus, _) = await _pay(shop, http, buyer, placed)
    assert cstatus == 200 and "card" not in orjson.dumps(payment).decode()
    # Retrying the payment start returns the same intent (one payment per order).
    _, again = await shop.api.post(f"/api/orders/{placed['id']}/payments", user=buyer)
    assert again["intent_id"] == payment["intent_id"] or again.get("error", {}).get("code") == "already_paid"
    assert await wait_for(lambda: _is(shop, buyer, placed["id"], "paid"))
    status, tickets = await shop.api.get("/api/me/tickets", user=buyer)
    assert len(tickets) == 2
    status, keyinfo = await shop.api.get(f"/api/events/{sale.event_id}/ticket-key")
    public = unb64u(keyinfo["public_key"])
    for tk in tickets:
        claims = verify_code(public, tk["code"])
        assert claims is not None and str(claims.ticket_id) == tk["id"] and str(claims.event_id) == sale.event_id
    code = tickets[0]["code"]
    # Change one fully significant character of the signature (the last one carries padding bits
    # that decoding ignores, so changing only it may not change the bytes).
    tampered = code[:-10] + ("B" if code[-10] != "B" else "C") + code[-9:]
    assert verify_code(public, tampered) is None
    row = await shop.db.fetchrow("SELECT held, sold FROM ticket_types WHERE id = $1::uuid", t["id"])
    assert (row["held"], row["sold"]) == (0, 2)
    assert await shop.db.fetchval("SELECT count(*) FROM payments") == 1
    types = {r["type"] for r in await shop.db.fetch("SELECT type FROM outbox")}
    assert {"order.placed", "order.paid", "ticket.issued"} <= types
    # QR codes, wallet JSON.
    async with http.get(shop.server.make_url(f"/api/tickets/{tickets[0]['id']}/qr.png"), headers=buyer.headers) as r:
        assert r.status == 200 and (await r.read())[:8] == b"\x89PNG\r\n\x1a\n"
    async with http.get(shop.server.make_url(f"/api/tickets/{tickets[0]['id']}/qr.svg"), headers=buyer.headers) as r:
        assert r.status == 200 and b"<svg" in await r.read()
    status, wallet = await shop.api.get(f"/api/tickets/{tickets[0]['id']}/wallet", user=buyer)
    assert wallet["barcode"]["message"] == tickets[0]["code"]


async def _is(shop, user, order_id, expected):
    return await _status(shop, user, order_id) == expected


async def test_declined_then_paid_and_webhook_replay_tamper_out_of_order(shop, http):
    sale, t = await _sale(shop)
    buyer = await shop.api.register()
    _, placed = await order(shop.api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1}])
    payment, (cstatus, body) = await _pay(shop, http, buyer, placed, card="4000000000000002")
    assert cstatus == 402 and body["error"]["code"] == "card_declined"

    async def failed():
        return await shop.db.fetchval("SELECT status FROM payments") == "failed"

    assert await wait_for(failed)
    assert await _status(shop, buyer, placed["id"]) == "held"
    cstatus, _ = await confirm(http, payment)
    assert cstatus == 200
    assert await wait_for(lambda: _is(shop, buyer, placed["id"], "paid"))
    events = shop.sandbox_app[STATE]["events"]
    succeeded = next(e for e in events if e["type"] == "payment_intent.succeeded")
    failed_event = next(e for e in events if e["type"] == "payment_intent.payment_failed")
    url = shop.server.make_url("/api/payments/webhooks/sandbox")

    async def post(payload: bytes, header: str):
        async with http.post(url, data=payload, headers={"Stripe-Signature": header,
                                                         "Content-Type": "application/json"}) as r:
            return r.status, await r.json()

    # Replay: same event id, validly signed again -> accepted, no effect.
    raw = orjson.dumps(succeeded)
    status, body = await post(raw, sign_header(SANDBOX_SECRET, raw))
    assert status == 200 and body.get("duplicate") is True
    # Tampered payload, wrong secret, stale timestamp -> 400 invalid_signature.
    forged = orjson.dumps({**succeeded, "id": "evt_forged"})
    for payload, header in ((forged, sign_header(SANDBOX_SECRET, raw)), (raw, sign_header("wrong", raw)),
                            (raw, sign_header(SANDBOX_SECRET, raw, int(time.time()) - 3600)), (raw, "")):
        status, body = await post(payload, header)
        assert status == 400 and body["error"]["code"] == "invalid_signature"
    # Out of order: an (earlier) failure delivered again under a new id after success changes nothing.
    late_fail = orjson.dumps({**failed_event, "id": "evt_late_" + uuid.uuid4().hex})
    status, _ = await post(late_fail, sign_header(SANDBOX_SECRET, late_fail))
    assert status == 200
    assert await _status(shop, buyer, placed["id"]) == "paid"
    assert await shop.db.fetchval("SELECT status FROM payments") == "succeeded"
    assert await shop.db.fetchval("SELECT count(*) FROM tickets") == 1


async def test_late_payment_reacquires_or_refunds(shop, http):
    sale, t = await _sale(shop, capacity=1)
    first, second = await shop.api.register(), await shop.api.register()
    _, placed = await order(shop.api, sale, first, [{"ticket_type_id": t["id"], "quantity": 1}])
    _, payment = await shop.api.post(f"/api/orders/{placed['id']}/payments", user=first)
    expire = "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1::uuid"
    await shop.db.execute(expire, placed["id"])
    assert await _status(shop, first, placed["id"]) == "expired"  # lazy expiry
    # Seats still free: the late payment re-acquires them.
    assert (await confirm(http, payment))[0] == 200
    assert await wait_for(lambda: _is(shop, first, placed["id"], "paid"))
    # Now the seat is gone; a second buyer's late payment is refunded automatically.
    await shop.db.execute("UPDATE ticket_types SET capacity = 2 WHERE id = $1::uuid", t["id"])
    await shop.server.app[__import__("handlers.orders", fromlist=["TICKETS"]).TICKETS].gate.invalidate(
        uuid.UUID(sale.event_id))
    shop.server.app[__import__("handlers.orders", fromlist=["TICKETS"]).TICKETS].orders.catalog.invalidate(
        uuid.UUID(sale.event_id))
    _, placed2 = await order(shop.api, sale, second, [{"ticket_type_id": t["id"], "quantity": 1}])
    _, payment2 = await shop.api.post(f"/api/orders/{placed2['id']}/payments", user=second)
    await shop.db.execute(expire, placed2["id"])
    assert await _status(shop, second, placed2["id"]) == "expired"
    third = await shop.api.register()
    assert (await order(shop.api, sale, third, [{"ticket_type_id": t["id"], "quantity": 1}]))[0] == 201
    assert (await confirm(http, payment2))[0] == 200
    assert await wait_for(lambda: _is(shop, second, placed2["id"], "refunded"))

    async def refunded():
        return await shop.db.fetchval("SELECT status FROM refunds WHERE order_id = $1::uuid", placed2["id"]) == "succeeded"

    assert await wait_for(refunded)
    row = await shop.db.fetchrow("SELECT held, sold, capacity FROM ticket_types WHERE id = $1::uuid", t["id"])
    assert (row["held"], row["sold"]) == (1, 1)
    assert await shop.db.fetchval("SELECT count(*) FROM tickets WHERE order_id = $1::uuid", placed2["id"]) == 0


async def test_refunds_partial_and_full_and_organizer_cancel(shop, http):
    sale, t = await _sale(shop, capacity=10, two_factor=True)
    buyer = await shop.api.register()
    _, placed = await order(shop.api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 3}])
    await _pay(shop, http, buyer, placed)
    assert await wait_for(lambda: _is(shop, buyer, placed["id"], "paid"))
    _, tickets = await shop.api.get("/api/me/tickets", user=buyer)
    # Buyers cannot refund themselves.
    status, _ = await shop.api.post(f"/api/orders/{placed['id']}/refunds", user=buyer, json={})
    assert status in (403, 404)
    status, body = await shop.api.post(f"/api/orders/{placed['id']}/refunds", user=sale.organizer,
                                       json={"ticket_ids": [tickets[0]["id"]]})
    assert status == 200 and body["status"] == "paid" and body["refunded_cents"] == 2500, body
    status, body = await shop.api.post(f"/api/orders/{placed['id']}/refunds", user=sale.organizer,
                                       json={"amount_cents": 100})
    assert status == 200 and body["refunded_cents"] == 2600
    _, mine = await shop.api.get("/api/me/tickets", user=buyer)
    assert len(mine) == 2
    assert await shop.db.fetchval("SELECT sold FROM ticket_types WHERE id = $1::uuid", t["id"]) == 2
    status, body = await shop.api.post(f"/api/orders/{placed['id']}/refunds", user=sale.organizer, json={})
    assert status == 200 and body["status"] == "refunded" and body["refunded_cents"] == 7500
    assert await shop.db.fetchval("SELECT sold FROM ticket_types WHERE id = $1::uuid", t["id"]) == 0
    assert (await shop.api.get("/api/me/tickets", user=buyer))[1] == []

    async def all_refunds_done():
        return await shop.db.fetchval("SELECT bool_and(status = 'succeeded') FROM refunds")

    assert await wait_for(all_refunds_done)
    refunded = sum(r["amount"] for r in shop.sandbox_app[STATE]["refunds"].values())
    assert refunded == 7500
    # Organizer cancels another paid order: full refund, tickets void, seats back.
    _, placed2 = await order(shop.api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}])
    await _pay(shop, http, buyer, placed2)
    assert await wait_for(lambda: _is(shop, buyer, placed2["id"], "paid"))
    status, body = await shop.api.post(f"/api/orders/{placed2['id']}/cancel", user=sale.organizer, json={})
    assert status == 200 and body["status"] == "cancelled"
    assert await shop.db.fetchval("SELECT sold + held FROM ticket_types WHERE id = $1::uuid", t["id"]) == 0
    role = await shop.db.fetchval("SELECT count(*) FROM event_members WHERE user_id = $1::uuid", buyer.id)
    assert role == 0


async def test_transfer_voids_old_code(shop, http):
    sale, t = await _sale(shop, kind="free", price_cents=0)
    alice, bob = await shop.api.register("Alice"), await shop.api.register("Bob")
    assert (await order(shop.api, sale, alice, [{"ticket_type_id": t["id"], "quantity": 1}]))[0] == 201
    _, [ticket] = await shop.api.get("/api/me/tickets", user=alice)
    status, _ = await shop.api.post(f"/api/tickets/{ticket['id']}/transfer", user=alice, json={"to_email": bob.email})
    assert status == 200
    assert (await shop.api.get("/api/me/tickets", user=alice))[1] == []
    _, [moved] = await shop.api.get("/api/me/tickets", user=bob)
    assert moved["id"] == ticket["id"] and moved["code"] != ticket["code"]
    assert await shop.db.fetchval("SELECT count(*) FROM tickets WHERE code = $1", ticket["code"]) == 0
    roles = {str(r["user_id"]) for r in await shop.db.fetch(
        "SELECT user_id FROM event_members WHERE role = 'attendee' AND event_id = $1::uuid", sale.event_id)}
    assert roles == {bob.id}
    status, _ = await shop.api.post(f"/api/tickets/{ticket['id']}/transfer", user=alice, json={"to_email": bob.email})
    assert status == 404


async def test_stripe_adapter_against_stripe_compatible_server(aiohttp_server, app_factory, settings_factory, http):
    """The official SDK (form-encoded REST, idempotency keys, signature check) against a local
    server speaking Stripe's protocol subset."""
    shop = await start_shop(aiohttp_server, app_factory, settings_factory, http, payments_provider="stripe")
    sale, t = await _sale(shop, two_factor=True)
    buyer = await shop.api.register()
    _, placed = await order(shop.api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1}])
    status, payment = await shop.api.post(f"/api/orders/{placed['id']}/payments", user=buyer)
    assert status == 201 and payment["provider"] == "stripe" and payment["client_secret"]
    intent = shop.sandbox_app[STATE]["intents"][payment["intent_id"]]
    assert intent["metadata"] == {"order_id": placed["id"]} and intent["amount"] == 2500
    # What Stripe.js would do in the buyer's browser.
    payment["confirm_url"] = f"{shop.sandbox_url}/v1/payment_intents/{payment['intent_id']}/confirm"
    assert (await confirm(http, payment))[0] == 200
    assert await wait_for(lambda: _is(shop, buyer, placed["id"], "paid"))
    status, body = await shop.api.post(f"/api/orders/{placed['id']}/refunds", user=sale.organizer,
                                       json={"amount_cents": 500})
    assert status == 200 and body["refunded_cents"] == 500

    async def refund_recorded():
        return await shop.db.fetchval("SELECT provider_refund_id FROM refunds")

    assert (await wait_for(refund_recorded) or "").startswith("re_")
    url = shop.server.make_url("/api/payments/webhooks/stripe")
    async with http.post(url, data=b'{"id": "evt_x"}', headers={"Stripe-Signature": "t=1,v1=00"}) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_signature"
