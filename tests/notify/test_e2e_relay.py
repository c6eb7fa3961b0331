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


async def test_question_answered_in_app_and_push(node, napi, ndb, fcm):
    """Q&A over real sockets: a moderator marks a question answered → relay → the asker's in-app
    notification (user room) and push (they asked for both)."""
    from datetime import UTC, datetime

    from handlers.devices import NOTIFY
    from tests.notify.support import add_attendee, make_session
    from tests.support.live import LiveClient

    organizer, asker = await napi.register("Org"), await napi.register("Asker")
    event = await make_event(ndb, organizer.id, starts_at=datetime.now(UTC) - timedelta(hours=1))
    session = await make_session(ndb, event["id"], starts_at=datetime.now(UTC) - timedelta(minutes=5))
    await add_attendee(ndb, event["id"], asker.id)
    await napi.post("/api/me/devices", user=asker, json={"platform": "ios", "token": "tok-asker-relay-1"})
    await napi.patch("/api/me/notification-preferences", user=asker, json={"in_app_and_push": True})
    room = f"session:{session['id']}"
    mod, att = (LiveClient(str(node.make_url("/")), token=u.access_token) for u in (organizer, asker))
    try:
        for client in (mod, att):
            await client.connect()
            assert (await client.call("room:join", {"room": room}))["ok"]
        assert (await att.call("room:join", {"room": f"user:{asker.id}"}))["ok"]
        in_app = node.app[NOTIFY].notifier.in_app  # presence is published every few seconds
        await eventually(lambda: in_app.online_users([uuid.UUID(asker.id)]), within=15)
        asked = await att.call("qa:ask", {"room": room, "text": "Are the slides online?", "client_id": "q1"})
        assert asked["ok"], asked
        for answered in (True, False, True):  # answered, unanswered, answered again: one notification
            ack = await mod.call("qa:answer", {"room": room, "id": asked["id"], "answered": answered})
            assert ack["ok"], ack
        note = await att.wait_for("notification", timeout=15) if not att.events["notification"] else \
            att.events["notification"][0]
        assert note["kind"] == "question_answered" and note["body"] == "Are the slides online?"
        push = (await eventually(lambda: fcm.fake.delivered.get("tok-asker-relay-1"), within=15))[0]
        assert push["notification"]["title"] == "Your question was answered"
        assert push["apns"]["headers"]["apns-priority"] == "5"
        await asyncio.sleep(0.5)
        assert len(att.events["notification"]) == 1 and len(fcm.fake.delivered["tok-asker-relay-1"]) == 1
    finally:
        for client in (mod, att):
            await client.disconnect()
