"""Push: device registration, preferences, the FCM adapter against a local v1 server (auth, dead
tokens, retries with Retry-After), quiet hours, expiry and exactly-once enqueueing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta

import pytest

from domain.notify.dispatch import Notification
from domain.notify.preferences import Preferences
from domain.notify.queue_worker import retry_delay
from handlers.api import CORE
from handlers.devices import NOTIFY
from integrations.push.fcm import Outcome, classify
from tests.notify.support import add_attendee, append_outbox, deliver, eventually, make_event


async def _register(napi, user, token, platform="android"):
    status, body = await napi.post("/api/me/devices", user=user, json={"platform": platform, "token": token})
    assert status == 201, body
    return body


async def test_devices_api(napi, ndb):
    alice, bob = await napi.register("Alice"), await napi.register("Bob")
    d1 = await _register(napi, alice, "tok-alice-phone-0001")
    assert d1["token_suffix"] == "one-0001" and "token" not in d1
    again = await _register(napi, alice, "tok-alice-phone-0001", platform="ios")  # idempotent per token
    assert again["id"] == d1["id"] and again["platform"] == "ios"
    await _register(napi, alice, "tok-alice-tablet-02")
    status, body = await napi.get("/api/me/devices", user=alice)
    assert status == 200 and len(body["devices"]) == 2
    # The same token registered by Bob moves to Bob (a handed-over phone).
    await _register(napi, bob, "tok-alice-phone-0001")
    assert len((await napi.get("/api/me/devices", user=alice))[1]["devices"]) == 1
    # Bob cannot delete Alice's device; Alice can.
    tablet = (await napi.get("/api/me/devices", user=alice))[1]["devices"][0]
    assert (await napi.delete(f"/api/me/devices/{tablet['id']}", user=bob))[0] == 404
    assert (await napi.delete(f"/api/me/devices/{tablet['id']}", user=alice))[0] == 204
    status, body = await napi.post("/api/me/devices", user=alice, json={"platform": "nokia", "token": "x" * 20})
    assert status == 422 and body["error"]["code"] == "validation_failed"
    status, body = await napi.post("/api/me/devices", user=alice,
                                   json={"platform": "web", "token": "t" * 20, "user_id": bob.id})
    assert status == 422 and body["error"]["details"][0]["field"] == "user_id"
    assert (await napi.get("/api/me/devices"))[0] == 401


async def test_preferences_api(napi):
    user = await napi.register()
    status, body = await napi.get("/api/me/notification-preferences", user=user)
    assert status == 200 and body["push"]["reminder"] is True and body["email"]["reminder"] is False
    status, body = await napi.patch("/api/me/notification-preferences", user=user, json={
        "push": {"announcement": False}, "email": {"reminder": True}, "in_app_and_push": True,
        "quiet_hours": {"start": "22:30", "end": "07:00"}, "timezone": "America/New_York"})
    assert status == 200, body
    assert body["push"]["announcement"] is False and body["push"]["order"] is True
    assert body["email"]["reminder"] is True and body["quiet_hours"] == {"start": "22:30", "end": "07:00"}
    assert (await napi.get("/api/me/notification-preferences", user=user))[1] == body
    for bad, field in [({"push": {"spam": True}}, "push.spam"), ({"timezone": "Mars/Olympus"}, "timezone"),
                       ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start")]:
        status, err = await napi.patch("/api/me/notification-preferences", user=user, json=bad)
        assert status == 422 and err["error"]["details"][0]["field"] == field, err
    status, body = await napi.patch("/api/me/notification-preferences", user=user, json={"quiet_hours": None})
    assert status == 200 and body["quiet_hours"] is None and body["timezone"] == "America/New_York"


async def test_announcement_push_end_to_end(node, napi, ndb, fcm):
    """Outbox fact → consumer → queue → pyfcm → local FCM v1 server; dead tokens are cleaned up."""
    organizer, alice = await napi.register("Org"), await napi.register("Alice")
    event = await make_event(ndb, organizer.id)
    await add_attendee(ndb, event["id"], alice.id)
    good = await _register(napi, alice, "tok-good-android-1")
    await _register(napi, alice, "tok-gone-android-2")
    await _register(napi, alice, "malformed-token-3", platform="ios")
    fcm.fake.unregistered.add("tok-gone-android-2")

    fact = await append_outbox(ndb, "announcement.posted", {"title": "Doors open", "text": "Coffee is <ready>!"},
                               event_id=event["id"])
    await deliver(node.app, "notify.push")
    await eventually(lambda: fcm.fake.delivered.get("tok-good-android-1"))
    msg = fcm.fake.delivered["tok-good-android-1"][0]
    assert msg["notification"] == {"title": "Doors open", "body": "Coffee is <ready>!"}
    assert msg["data"]["kind"] == "announcement" and msg["data"]["event_id"] == str(event["id"])
    assert msg["data"]["notification_id"] == str(fact.id) and all(isinstance(v, str) for v in msg["data"].values())
    assert msg["android"]["priority"] == "normal"
    # UNREGISTERED and INVALID_ARGUMENT(token) remove those devices; the good one stays.
    devices = await eventually(lambda: _devices_if(napi, alice, 1))
    assert [d["id"] for d in devices] == [good["id"]]
    assert fcm.fake.token_requests == 1  # one OAuth token shared by the sender threads
    rows = await ndb.fetch("SELECT state FROM push_messages WHERE dedupe_key = $1", str(fact.id))
    assert [r["state"] for r in rows] == ["sent"]
    # Redelivery of the same fact (at-least-once relay) enqueues nothing new.
    await deliver(node.app, "notify.push")
    assert await ndb.fetchval("SELECT count(*) FROM push_messages") == 1


async def _devices_if(napi, user, count):
    devices = (await napi.get("/api/me/devices", user=user))[1]["devices"]
    return devices if len(devices) == count else None


async def test_transient_errors_retry_with_backoff_then_give_up(app_factory, notify_settings, http, fcm):
    from tests.support.api import Api

    server = await app_factory(notify_settings(push_max_attempts=3))
    napi, hub, db = Api(str(server.make_url("/")), http), server.app[NOTIFY], server.app[CORE].db
    user = await napi.register()
    await _register(napi, user, "tok-flaky-000001")
    await _register(napi, user, "tok-down-0000002")
    fcm.fake.fail("tok-flaky-000001", "QUOTA_EXCEEDED", retry_after=1)
    fcm.fake.fail("tok-flaky-000001", "UNAVAILABLE")
    fcm.fake.fail("tok-down-0000002", "INTERNAL", times=10)
    started = datetime.now(UTC)
    n = Notification(key=f"test:{uuid.uuid4()}", kind="order", title="Order confirmed", body="Enjoy")
    report = await hub.notifier.notify(n, [uuid.UUID(user.id)])
    assert report.push_enqueued == 2
    await eventually(lambda: fcm.fake.delivered.get("tok-flaky-000001"), within=8)
    assert datetime.now(UTC) - started >= timedelta(seconds=1)  # Retry-After honoured
    assert fcm.fake.attempts["tok-flaky-000001"] == 3
    row = await eventually(lambda: db.fetchrow(
        "SELECT state, attempts, last_error FROM push_messages WHERE kind = 'order' AND state = 'failed'"))
    assert row["attempts"] == 3 and row["last_error"].startswith("INTERNAL")
    assert fcm.fake.attempts["tok-down-0000002"] == 3
    assert len((await napi.get("/api/me/devices", user=user))[1]["devices"]) == 2  # transient ≠ dead


async def test_preferences_quiet_hours_and_expiry(node, napi, ndb, fcm):
    hub = node.app[NOTIFY]
    muted, sleeper, normal = await napi.register("Muted"), await napi.register("Sleeper"), await napi.register("Normal")
    for u, tok in ((muted, "tok-muted-0001"), (sleeper, "tok-sleep-0002"), (normal, "tok-norm-00003")):
        await _register(napi, u, tok)
    await napi.patch("/api/me/notification-preferences", user=muted, json={"push": {"reminder": False}})
    now = datetime.now(UTC)
    start = (now - timedelta(hours=1)).strftime("%H:%M")
    end = (now + timedelta(hours=2)).strftime("%H:%M")
    await napi.patch("/api/me/notification-preferences", user=sleeper,
                     json={"quiet_hours": {"start": start, "end": end}, "timezone": "UTC"})
    users = [uuid.UUID(u.id) for u in (muted, sleeper, normal)]
    report = await hub.notifier.notify(Notification(key="t:reminder", kind="reminder", title="Soon", body="x",
                                                    expires_at=now + timedelta(minutes=10)), users)
    # muted: kind off; sleeper: quiet hours outlast the reminder → dropped; normal: pushed
    assert report.muted == [uuid.UUID(muted.id)] and report.push_enqueued == 1
    await eventually(lambda: fcm.fake.delivered.get("tok-norm-00003"))
    report = await hub.notifier.notify(Notification(key="t:news", kind="announcement", title="News", body="y"), users)
    assert report.push_enqueued == 3 and report.deferred == 1
    row = await ndb.fetchrow("SELECT not_before FROM push_messages WHERE dedupe_key = 't:news' AND user_id = $1",
                             users[1])
    assert row["not_before"] > now + timedelta(minutes=100)  # held until the quiet hours end
    await eventually(lambda: len(fcm.fake.delivered.get("tok-muted-0001", [])) == 1)
    assert "tok-sleep-0002" not in fcm.fake.delivered
    # An already-expired notification sends nothing at all.
    stale = Notification(key="t:stale", kind="reminder", title="x", body="y", expires_at=now - timedelta(seconds=1))
    assert (await hub.notifier.notify(stale, users)).push_enqueued == 0


async def test_online_users_get_in_app_not_push(node, napi, ndb, fcm):
    """Presence and in-app emits are the live rooms' (real Socket.IO clients on `user:{id}`)."""
    from tests.support.live import LiveClient

    organizer = await napi.register("Org")
    online_user, both_user, offline_user = (await napi.register("On"), await napi.register("Both"),
                                            await napi.register("Off"))
    event = await make_event(ndb, organizer.id)
    for u, tok in ((online_user, "tok-online-001"), (both_user, "tok-both-00002"), (offline_user, "tok-off-000003")):
        await add_attendee(ndb, event["id"], u.id)
        await _register(napi, u, tok)
    await napi.patch("/api/me/notification-preferences", user=both_user, json={"in_app_and_push": True})
    clients = []
    for u in (online_user, both_user):
        client = LiveClient(str(node.make_url("/")), token=u.access_token)
        await client.connect()
        ack = await client.call("room:join", {"room": f"user:{u.id}"})
        assert ack["ok"] is True, ack
        clients.append(client)
    hub = node.app[NOTIFY]
    ids = [uuid.UUID(u.id) for u in (online_user, both_user, offline_user)]
    await eventually(lambda: _online_count(hub, ids, 2), within=15)
    try:
        fact = await append_outbox(ndb, "announcement.posted", {"title": "Doors", "text": "Open now"},
                                   event_id=event["id"])
        await deliver(node.app, "notify.push")
        await deliver(node.app, "notify.push")  # redelivered: no second in-app event, no second push
        for client, user in zip(clients, (online_user, both_user), strict=True):
            got = await client.wait_for("notification") if not client.events["notification"] else \
                client.events["notification"][0]
            assert got["room"] == f"user:{user.id}" and got["id"] == str(fact.id) and got["title"] == "Doors"
        await eventually(lambda: fcm.fake.delivered.get("tok-both-00002") and fcm.fake.delivered.get("tok-off-000003"))
        assert "tok-online-001" not in fcm.fake.delivered
        await asyncio.sleep(0.2)
        assert [len(c.events["notification"]) for c in clients] == [1, 1]
    finally:
        for client in clients:
            await client.disconnect()


async def _online_count(hub, ids, expected):
    return len(await hub.notifier.in_app.online_users(ids)) == expected


# --- pure units --------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "outcome"), [
    (200, {"name": "projects/p/messages/1"}, Outcome.SENT),
    (404, {"error": {"status": "NOT_FOUND", "details": [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}},
     Outcome.INVALID_TOKEN),
    (400, {"error": {"status": "INVALID_ARGUMENT", "message": "The registration token is not a valid FCM "
                     "registration token"}}, Outcome.INVALID_TOKEN),
    (400, {"error": {"status": "INVALID_ARGUMENT", "message": "data must be strings"}}, Outcome.FAILED),
    (429, {"error": {"status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "QUOTA_EXCEEDED"}]}},
     Outcome.RETRY),
    (503, None, Outcome.RETRY),
    (403, {"error": {"details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                  "errorCode": "SENDER_ID_MISMATCH"}]}}, Outcome.INVALID_TOKEN),
])
def test_classify(status, body, outcome):
    result = classify(status, body, "7" if status == 429 else None)
    assert result.outcome is outcome
    if status == 429:
        assert result.retry_after == 7 and result.error_code == "QUOTA_EXCEEDED"


def test_retry_delay_is_capped_and_jittered():
    import random

    rng = random.Random(1)
    delays = [retry_delay(a, base=2, cap=60, rng=rng) for a in range(1, 12)]
    assert all(0 < d <= 60 for d in delays) and delays[0] <= 2 and max(delays) > 30
    assert retry_delay(1, base=2, cap=60, retry_after=30, rng=rng) >= 30
    assert retry_delay(1, base=2, cap=60, retry_after=9999, rng=rng) == 60


def test_quiet_hours_wrap_midnight_and_time_zones():
    p = Preferences(user_id=uuid.uuid4(), quiet_start=time(22, 0), quiet_end=time(7, 0), timezone="Europe/Berlin")
    # 23:30 Berlin (CEST, UTC+2) on 14 May → quiet until 07:00 Berlin on 15 May = 05:00 UTC
    assert p.quiet_until(datetime(2030, 5, 14, 21, 30, tzinfo=UTC)) == datetime(2030, 5, 15, 5, 0, tzinfo=UTC)
    # 06:00 Berlin → until 07:00 the same day
    assert p.quiet_until(datetime(2030, 5, 15, 4, 0, tzinfo=UTC)) == datetime(2030, 5, 15, 5, 0, tzinfo=UTC)
    assert p.quiet_until(datetime(2030, 5, 15, 10, 0, tzinfo=UTC)) is None
    day = Preferences(user_id=uuid.uuid4(), quiet_start=time(12, 0), quiet_end=time(14, 0), timezone="UTC")
    assert day.quiet_until(datetime(2030, 1, 1, 13, 0, tzinfo=UTC)) == datetime(2030, 1, 1, 14, 0, tzinfo=UTC)
    assert day.quiet_until(datetime(2030, 1, 1, 14, 0, tzinfo=UTC)) is None


async def test_event_cancelled_and_question_answered_triggers(node, napi, ndb, fcm, smtp):
    organizer, fan, asker = await napi.register("Org"), await napi.register("Fan"), await napi.register("Asker")
    event = await make_event(ndb, organizer.id, title="NightConf")
    await add_attendee(ndb, event["id"], fan.id)
    await _register(napi, fan, "tok-fan-cancel-1")
    await _register(napi, asker, "tok-asker-00001")
    await ndb.execute("UPDATE events SET status = 'cancelled' WHERE id = $1", event["id"])
    await append_outbox(ndb, "event.cancelled", {"event_id": str(event["id"]), "reason": "Venue flooded"},
                        event_id=event["id"])
    await append_outbox(ndb, "question.answered", {"question_id": str(uuid.uuid4()), "author_id": asker.id,
                                                   "text": "Will the slides be online?"}, event_id=event["id"])
    await deliver(node.app, "notify.push")
    await deliver(node.app, "notify.email")
    cancel = (await eventually(lambda: fcm.fake.delivered.get("tok-fan-cancel-1")))[0]
    assert cancel["notification"] == {"title": "Cancelled: NightConf", "body": "Venue flooded"}
    answered = (await eventually(lambda: fcm.fake.delivered.get("tok-asker-00001")))[0]
    assert answered["notification"]["title"] == "Your question was answered"
    assert answered["data"]["kind"] == "question_answered"
    (mail,) = await smtp.wait_for(1)
    assert mail["Subject"] == "NightConf: This event has been cancelled" and fan.email in str(mail["To"])
