"""Email through a real SMTP server (aiosmtpd): password reset and verification flows, schedule
change and announcement mail, dedupe per outbox event and retries on transient SMTP errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.notify.support import (
    add_attendee,
    append_outbox,
    bookmark,
    deliver,
    eventually,
    make_event,
    make_session,
    parts,
)

TOKEN = re.compile(r"#token=([A-Za-z0-9_\-]+)")


async def _reset_link(node, smtp, address, *, count):
    await deliver(node.app, "notify.email")
    await smtp.wait_for(count)
    msg = smtp.to(address)[-1]
    body = parts(msg)
    return msg, body, TOKEN.search(body["text"]).group(1)


async def test_password_reset_flow(node, napi, ndb, smtp):
    user = await napi.register("Ada <Lovelace>")
    status, body = await napi.post("/api/auth/password-reset", json={"email": "nobody@example.org"})
    assert (status, body) == (202, {"accepted": True})
    status, body = await napi.post("/api/auth/password-reset", json={"email": user.email.upper()})
    assert (status, body) == (202, {"accepted": True})  # same answer: no account enumeration
    raw = await ndb.fetchval("SELECT data::text FROM outbox WHERE type = 'account.password_reset_requested'")
    assert raw is not None and "token" not in raw  # the outbox (and Kafka) never sees a token

    msg, body, token = await _reset_link(node, smtp, user.email, count=1)
    assert len(smtp.messages) == 1 and msg["Subject"] == "Reset your Foyer Events password"
    assert msg["From"] == "Foyer Events <events@foyer.test>" and msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    assert "Ada <Lovelace>" in body["text"] and "Ada &lt;Lovelace&gt;" in body["html"]  # HTML autoescaped
    assert f"https://foyer.test/reset-password#token={token}" in body["html"]
    assert await ndb.fetchval("SELECT count(*) FROM account_tokens WHERE token_hash = sha256($1::bytea)",
                              token.encode()) == 1

    status, body = await napi.post("/api/auth/password-reset/confirm", json={"token": token, "password": "short"})
    assert status == 422 and body["error"]["details"][0]["field"] == "password"
    status, _ = await napi.post("/api/auth/password-reset/confirm",
                                json={"token": token, "password": "a brand new passphrase"})
    assert status == 204
    # Single use; every refresh token revoked; the new password works, the old one not.
    status, body = await napi.post("/api/auth/password-reset/confirm",
                                   json={"token": token, "password": "another passphrase!"})
    assert status == 400 and body["error"]["code"] == "invalid_link"
    assert (await napi.post("/api/auth/refresh", json={"refresh_token": user.refresh_token}))[0] == 401
    assert (await napi.get("/api/me", user=user))[0] == 401  # the old session's access token too
    user.password = "a brand new passphrase"
    status, tokens = await napi.login(user)
    assert status == 200
    user.access_token, user.refresh_token = tokens["access_token"], tokens["refresh_token"]
    # Redelivering the request event queues nothing more.
    await deliver(node.app, "notify.email")
    assert await ndb.fetchval("SELECT count(*) FROM email_deliveries") == 1 and len(smtp.messages) == 1
    # The reset link proved the address.
    assert (await napi.get("/api/me/email-verification", user=user))[1]["verified"] is True


async def test_reset_token_expires_and_unknown_tokens_fail(node, napi, ndb, smtp):
    user = await napi.register()
    await napi.post("/api/auth/password-reset", json={"email": user.email})
    _, _, token = await _reset_link(node, smtp, user.email, count=1)
    await ndb.execute("UPDATE account_tokens SET expires_at = now() - interval '1 second'")
    for t in (token, "x" * 43):
        status, body = await napi.post("/api/auth/password-reset/confirm", json={"token": t, "password": "p" * 12})
        assert status == 400 and body["error"]["code"] == "invalid_link"


async def test_password_reset_throttling(app_factory, notify_settings, http, smtp):
    from handlers.api import CORE
    from tests.support.api import Api

    server = await app_factory(notify_settings(account_email_per_address_per_hour=2,
                                               account_email_per_ip_per_hour=4))
    napi = Api(str(server.make_url("/")), http)
    user = await napi.register()
    for _ in range(4):
        assert (await napi.post("/api/auth/password-reset", json={"email": user.email}))[0] == 202
    status, body = await napi.post("/api/auth/password-reset", json={"email": user.email})
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(napi.last_response.headers["Retry-After"]) > 0
    await deliver(server.app, "notify.email")
    assert len(await smtp.wait_for(2)) == 2  # per-address cap: the extra requests sent nothing
    assert await server.app[CORE].db.fetchval("SELECT count(*) FROM email_deliveries") == 2


async def test_email_verification_flow(node, napi, smtp):
    user = await napi.register("Grace")
    assert (await napi.get("/api/me/email-verification", user=user))[1]["verified"] is False
    status, body = await napi.post("/api/auth/verify-email", user=user)
    assert status == 202 and body == {"email": user.email, "verified": False, "sent": True}
    await deliver(node.app, "notify.email")
    msg = (await smtp.wait_for(1))[0]
    assert msg["Subject"] == "Confirm your email address for Foyer Events"
    token = TOKEN.search(parts(msg)["text"]).group(1)
    assert "verify-email#token=" in parts(msg)["html"]
    status, body = await napi.post("/api/auth/verify-email/confirm", json={"token": token})
    assert status == 200 and body["verified"] is True and body["email"] == user.email
    assert (await napi.post("/api/auth/verify-email/confirm", json={"token": token}))[1]["error"]["code"] == \
        "invalid_link"
    status, body = await napi.get("/api/me/email-verification", user=user)
    assert body["verified"] is True and body["verified_at"]
    status, body = await napi.post("/api/auth/verify-email", user=user)
    assert body["verified"] is True and body["sent"] is False


async def test_schedule_change_reaches_bookmarks_by_email_and_push(node, napi, ndb, smtp, fcm):
    organizer, fan, optout, other = (await napi.register("Org"), await napi.register("Fan"),
                                     await napi.register("Quiet"), await napi.register("Other"))
    event = await make_event(ndb, organizer.id)
    start = event["starts_at"] + timedelta(hours=2)
    talk = await make_session(ndb, event["id"], starts_at=start, title="Speed & <Safety>")
    unrelated = await make_session(ndb, event["id"], starts_at=start, room="Room B")
    await bookmark(ndb, fan.id, talk["id"])
    await bookmark(ndb, optout.id, talk["id"])
    await bookmark(ndb, other.id, unrelated["id"])
    await napi.patch("/api/me/notification-preferences", user=optout, json={"email": {"schedule_change": False}})
    await napi.post("/api/me/devices", user=fan, json={"platform": "android", "token": "tok-fan-000001"})
    await ndb.execute("UPDATE sessions SET starts_at = starts_at + interval '1 hour', ends_at = ends_at + "
                      "interval '1 hour', room = 'Main Hall' WHERE id = $1", talk["id"])
    await append_outbox(ndb, "schedule.changed", {"event_id": str(event["id"]), "version": 3, "changes": [
        {"version": 3, "entity": "session", "entity_id": str(talk["id"]), "op": "updated",
         "fields": ["starts_at", "ends_at", "room"], "data": {}},
        {"version": 2, "entity": "speaker", "entity_id": str(event["id"]), "op": "updated", "fields": ["bio"]}]},
        event_id=event["id"])
    await deliver(node.app, "notify.email")
    await deliver(node.app, "notify.push")
    (msg,) = await smtp.wait_for(1)
    assert await ndb.fetchval("SELECT count(*) FROM email_deliveries") == 1  # the opted-out user: none
    assert msg["To"].addresses[0].addr_spec == fan.email
    body = parts(msg)
    assert msg["Subject"] == "Schedule change: Speed & <Safety>"
    assert "Main Hall" in body["text"] and "New start time" in body["text"]
    assert "Speed &amp; &lt;Safety&gt;" in body["html"] and "<Safety>" not in body["html"]
    push = (await _wait_push(fcm, "tok-fan-000001"))[0]
    assert push["notification"]["title"] == "Schedule change: Speed & <Safety>"
    assert "Main Hall" in push["notification"]["body"] and push["android"]["priority"] == "high"

    # Cancelling: "Cancelled" to the same audience; redelivery sends nothing twice.
    await ndb.execute("UPDATE sessions SET status = 'cancelled' WHERE id = $1", talk["id"])
    await append_outbox(ndb, "schedule.changed", {"event_id": str(event["id"]), "version": 4, "changes": [
        {"version": 4, "entity": "session", "entity_id": str(talk["id"]), "op": "updated", "fields": ["status"]}]},
        event_id=event["id"])
    await deliver(node.app, "notify.email")
    await deliver(node.app, "notify.email")
    assert [m["Subject"] for m in await smtp.wait_for(2)] == ["Schedule change: Speed & <Safety>",
                                                              "Cancelled: Speed & <Safety>"]
    assert await ndb.fetchval("SELECT count(*) FROM email_deliveries") == 2


async def _wait_push(fcm, token):
    from tests.notify.support import eventually

    return await eventually(lambda: fcm.fake.delivered.get(token))


async def test_announcement_email_retries_transient_smtp_errors_once_per_recipient(node, napi, ndb, smtp):
    organizer = await napi.register("Org")
    a, b = await napi.register("A"), await napi.register("B")
    event = await make_event(ndb, organizer.id, title="DevConf")
    for u in (a, b):
        await add_attendee(ndb, event["id"], u.id)
    smtp.fail_next("451 4.3.0 Mailbox temporarily unavailable")
    await append_outbox(ndb, "announcement.posted", {"title": "Lunch moved", "text": "Lunch is at 13:00.\nEnjoy!"},
                        event_id=event["id"])
    await deliver(node.app, "notify.email")
    await deliver(node.app, "notify.email")  # at-least-once redelivery: nothing new is queued
    messages = await smtp.wait_for(2)
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in messages) == sorted([a.email, b.email])
    assert messages[0]["Subject"] == "DevConf: Lunch moved"
    assert "Lunch is at 13:00." in parts(messages[0])["text"]
    states = await eventually(lambda: _states_if_done(ndb))
    assert states == [("sent", 1), ("sent", 2)]  # the refused one went out on its second attempt
    assert len(smtp.messages) == 2


async def _states_if_done(ndb):
    rows = await ndb.fetch("SELECT state, attempts FROM email_deliveries ORDER BY attempts")
    states = [(r["state"], r["attempts"]) for r in rows]
    return states if all(s == "sent" for s, _ in states) else None


async def test_permanent_smtp_error_fails_without_retrying(node, napi, ndb, smtp):
    organizer, a = await napi.register("Org"), await napi.register("A")
    event = await make_event(ndb, organizer.id)
    await add_attendee(ndb, event["id"], a.id)
    smtp.fail_next("550 5.1.1 No such user")
    await append_outbox(ndb, "announcement.posted", {"text": "hello"}, event_id=event["id"])
    await deliver(node.app, "notify.email")
    row = await eventually(lambda: ndb.fetchrow(
        "SELECT attempts, last_error FROM email_deliveries WHERE state = 'failed'"))
    assert row["attempts"] == 1 and "550" in row["last_error"] and smtp.messages == []


def test_templates_render_without_missing_variables():
    """Every template renders with the context its sender gives (StrictUndefined catches typos)."""
    from integrations.email.compose import EmailComposer

    composer = EmailComposer(sender="Foyer <a@b.test>")
    now = datetime.now(UTC)
    session = {"title": "T", "when": "now", "room": "R"}
    contexts = {
        "password_reset": {"name": "n", "site_name": "s", "link": "l", "valid_minutes": 60},
        "verify_email": {"name": "n", "site_name": "s", "link": "l", "valid_hours": 48, "email": "e"},
        "session_reminder": {"name": "n", "site_name": "s", "event_title": "E", "session": session, "session_url": ""},
        "schedule_changed": {"name": "n", "site_name": "s", "event_title": "E", "session": session, "cancelled": False,
                             "changes": ["New room"], "session_url": "u"},
        "announcement": {"name": "n", "site_name": "s", "event_title": "E", "title": "t", "text": "x",
                         "event_url": "u"},
        "order_confirmed": {"name": "n", "site_name": "s", "event": {"title": "E", "when": str(now), "where": ""},
                            "order": {"id": "o", "total_cents": 1250, "currency": "EUR",
                                      "items": [{"name": "GA", "quantity": 2}]},
                            "tickets": [{"code": "c", "type_name": "GA", "holder": "h", "cid": "q@x"}],
                            "tickets_url": "u"},
    }
    for name, context in contexts.items():
        subject, text, html = composer.render(name, context)
        assert subject and text.strip() and html.startswith("<!doctype html>"), name
    assert "12.50 EUR" in composer.render("order_confirmed", contexts["order_confirmed"])[1]
