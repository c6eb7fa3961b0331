"""Reminders and feedback prompts: claimed exactly once however many schedulers scan at the same
time (two nodes here), re-armed when a session moves, delivered by push with an expiry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from handlers.api import CORE
from handlers.devices import NOTIFY
from tests.notify.support import add_attendee, bookmark, deliver, eventually, make_event, make_session


async def test_reminders_are_claimed_once_across_nodes(app_factory, notify_settings, http, fcm, smtp):
    from tests.support.api import Api

    settings = notify_settings(reminder_lead_minutes=15)
    node1, node2 = await app_factory(settings), await app_factory(settings)
    napi, db = Api(str(node1.make_url("/")), http), node1.app[CORE].db
    organizer = await napi.register()
    users = [await napi.register(f"U{i}") for i in range(3)]
    event = await make_event(ndb := db, organizer.id, starts_at=datetime.now(UTC) - timedelta(hours=1))
    soon = await make_session(ndb, event["id"], starts_at=datetime.now(UTC) + timedelta(minutes=10), title="Soon")
    later = await make_session(ndb, event["id"], starts_at=datetime.now(UTC) + timedelta(hours=3), title="Later",
                               room="Room B")
    for u in users:
        await bookmark(db, u.id, soon["id"])
        await bookmark(db, u.id, later["id"])
    await napi.post("/api/me/devices", user=users[0], json={"platform": "android", "token": "tok-remind-001"})
    await napi.patch("/api/me/notification-preferences", user=users[1], json={"email": {"reminder": True}})

    schedulers = [node1.app[NOTIFY].scheduler, node2.app[NOTIFY].scheduler] * 3
    results = await asyncio.gather(*(s.tick() for s in schedulers))
    assert sum(r[0] for r in results) == 3  # three users, one session due, claimed once in total
    facts = await db.fetch("SELECT data FROM outbox WHERE type = 'session.reminder_due'")
    assert len(facts) == 1 and sorted(facts[0]["data"]["user_ids"]) == sorted(u.id for u in users)
    assert (await node2.app[NOTIFY].scheduler.tick()) == (0, 0)

    await deliver(node1.app, "notify.push")
    push = (await eventually(lambda: fcm.fake.delivered.get("tok-remind-001")))[0]
    assert push["notification"]["title"].startswith("In ") and "Soon" in push["notification"]["title"]
    assert push["android"]["priority"] == "high"
    row = await db.fetchrow("SELECT expires_at FROM push_messages")
    assert row["expires_at"] == soon["starts_at"]
    await deliver(node1.app, "notify.email")
    (mail,) = await smtp.wait_for(1)
    assert mail["Subject"] == "Starting soon: Soon" and users[1].email in str(mail["To"])

    # Moving the session re-arms its reminder for the new start; the old fact is now stale.
    await db.execute("UPDATE sessions SET starts_at = starts_at + interval '2 minutes', "
                     "ends_at = ends_at + interval '2 minutes' WHERE id = $1", soon["id"])
    assert (await node1.app[NOTIFY].scheduler.tick())[0] == 3
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE type = 'session.reminder_due'") == 2


async def test_feedback_prompt_goes_to_attendees_once(node, napi, ndb, fcm):
    organizer, attendee, visitor = await napi.register(), await napi.register(), await napi.register()
    event = await make_event(ndb, organizer.id, starts_at=datetime.now(UTC) - timedelta(hours=3))
    ended = await make_session(ndb, event["id"], starts_at=datetime.now(UTC) - timedelta(minutes=50), minutes=45)
    await make_session(ndb, event["id"], starts_at=datetime.now(UTC) - timedelta(hours=2), minutes=30, room="Old")
    await add_attendee(ndb, event["id"], attendee.id)
    for u, tok in ((attendee, "tok-attendee-01"), (visitor, "tok-visitor-002")):
        await bookmark(ndb, u.id, ended["id"])
        await napi.post("/api/me/devices", user=u, json={"platform": "android", "token": tok})
    scheduler = node.app[NOTIFY].scheduler
    assert await asyncio.gather(scheduler.tick(), scheduler.tick()) in ([(0, 1), (0, 0)], [(0, 0), (0, 1)])
    await deliver(node.app, "notify.push")
    push = (await eventually(lambda: fcm.fake.delivered.get("tok-attendee-01")))[0]
    assert push["notification"]["title"] == "How was Async all the way?"
    assert push["data"]["session_id"] == str(ended["id"]) and push["data"]["kind"] == "feedback_prompt"
    assert "tok-visitor-002" not in fcm.fake.delivered  # no ticket, no feedback
