"""End to end through the real outbox relay: HTTP changes in other areas (schedule, ticketing,
accounts) → outbox → relay → notify consumers → queues → local FCM v1 server and SMTP server.
No consumer is called by hand here."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta

from tests.notify.support import eventually, make_event, parts


async def test_schedule_change_order_and_reset_flow_through_the_relay(node, napi, ndb, fcm, smtp):
    organizer, fan = await napi.register("Org"), await napi.register("Fan")
    event = await make_event(ndb, organizer.id, title="RelayConf")
    start = event["starts_at"] + timedelta(hours=1)
    status, session = await napi.post(f"/api/events/{event['id']}/sessions", user=organizer, json={
        "title": "Exactly once", "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat(),
        "room": "Room 1"})
    assert status == 201, session
    assert (await napi.put(f"/api/me/agenda/{session['id']}", user=fan))[0] in (200, 201)
    await napi.post("/api/me/devices", user=fan, json={"platform": "android", "token": "tok-relay-fan-01"})

    # 1. A schedule change reaches the bookmark by push and email, once.
    status, body = await napi.patch(f"/api/sessions/{session['id']}", user=organizer, json={"room": "Main Hall"})
    assert status == 200, body
    push = (await eventually(lambda: fcm.fake.delivered.get("tok-relay-fan-01"), within=15))[0]
    assert push["notification"]["title"] == "Schedule change: Exactly once"
    assert "Main Hall" in push["notification"]["body"]
    (mail,) = await smtp.wait_for(1, within=15)
    assert mail["Subject"] == "Schedule change: Exactly once" and fan.email in str(mail["To"])

    # 2. A free order: confirmation email with QR tickets and an order push.
    status, ttype = await napi.post(f"/api/events/{event['id']}/ticket-types", user=organizer, json={
        "name": "Free", "kind": "free", "price_cents": 0, "currency": "EUR", "capacity": 3})
    assert status == 201, ttype
    status, order = await napi.post(f"/api/events/{event['id']}/orders", user=fan,
                                    json={"items": [{"ticket_type_id": ttype["id"], "quantity": 1}]},
                                    headers={"Idempotency-Key": uuid.uuid4().hex})
    assert status == 201 and order["status"] == "confirmed", order
    await smtp.wait_for(2, within=15)
    confirmation = smtp.messages[1]
    assert confirmation["Subject"] == "Your tickets for RelayConf" and len(parts(confirmation)["images"]) == 1
    await eventually(lambda: len(fcm.fake.delivered.get("tok-relay-fan-01", [])) == 2, within=15)
    assert fcm.fake.delivered["tok-relay-fan-01"][1]["notification"]["title"] == "Order confirmed"

    # 3. Password reset: the request, the relay, the email worker, the link.
    assert (await napi.post("/api/auth/password-reset", json={"email": fan.email}))[0] == 202
    await smtp.wait_for(3, within=15)
    token = re.search(r"#token=([A-Za-z0-9_\-]+)", parts(smtp.messages[2])["text"]).group(1)
    assert (await napi.post("/api/auth/password-reset/confirm",
                            json={"token": token, "password": "relay-delivered secret"}))[0] == 204

    # Nothing arrives twice, however the relay batches and retries.
    await asyncio.sleep(0.5)
    assert len(smtp.messages) == 3 and len(fcm.fake.delivered["tok-relay-fan-01"]) == 2
