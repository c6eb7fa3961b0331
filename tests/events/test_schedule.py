"""Sessions and speakers: validation, room conflicts (pre-check, constraint, concurrency), bounds,
speaker assignment, versioned changes, outbox facts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import pytest

from tests.events.helpers import add_session, add_speaker, at, create_event, errors_of


@pytest.fixture
async def owner(api):
    return await api.register("Owner")


@pytest.fixture
async def event(api, owner):
    return await create_event(api, owner)


async def test_session_crud_and_validation(api, owner, event, db):
    eid = event["id"]
    grace = await add_speaker(api, owner, eid)
    session = await add_session(api, owner, eid, title="  Keynote ", abstract="Opening.", track="Main",
                                capacity=300, speaker_ids=[grace["id"]])
    assert session["title"] == "Keynote" and session["status"] == "scheduled" and session["event_id"] == eid
    assert session["speaker_ids"] == [grace["id"]] and session["starts_at"] == "2031-05-12T09:00:00Z"
    status, got = await api.get(f"/api/sessions/{session['id']}", user=owner)
    assert status == 200 and got == session

    status, body = await api.post(f"/api/events/{eid}/sessions", user=owner, json={
        "title": "", "starts_at": at(3), "ends_at": at(2), "capacity": 0, "speaker_ids": [str(uuid.uuid4())]})
    assert status == 422 and list(errors_of(body)) == ["title"]  # shape first (min_length)
    status, body = await api.post(f"/api/events/{eid}/sessions", user=owner, json={
        "title": " ", "starts_at": at(3), "ends_at": at(2), "speaker_ids": [str(uuid.uuid4())]})
    assert status == 422 and set(errors_of(body)) == {"title", "ends_at", "speaker_ids.0"}
    # sessions lie within the event
    status, body = await api.post(f"/api/events/{eid}/sessions", user=owner, json={
        "title": "Too early", "starts_at": at(-1), "ends_at": at(1)})
    assert status == 422 and set(errors_of(body)) == {"starts_at", "ends_at"}
    # another event's speaker is refused
    other = await create_event(api, owner, title="Other")
    foreign = await add_speaker(api, owner, other["id"])
    status, body = await api.patch(f"/api/sessions/{session['id']}", user=owner,
                                   json={"speaker_ids": [grace["id"], foreign["id"]]})
    assert status == 422 and errors_of(body) == {"speaker_ids.1": "not a speaker of this event"}
    status, body = await api.patch(f"/api/sessions/{session['id']}", user=owner,
                                   json={"status": "cancelled", "event_id": other["id"]})
    assert status == 422

    status, body = await api.patch(f"/api/sessions/{session['id']}", user=owner,
                                   json={"ends_at": at(2.5), "capacity": None})
    assert status == 200 and body["ends_at"] == "2031-05-12T10:30:00Z" and body["capacity"] is None
    status, body = await api.post(f"/api/sessions/{session['id']}/cancel", user=owner)
    assert status == 200 and body["status"] == "cancelled"
    status, body = await api.post(f"/api/sessions/{session['id']}/cancel", user=owner)
    assert status == 409 and body["error"]["code"] == "invalid_state"
    status, _ = await api.delete(f"/api/sessions/{session['id']}", user=owner)
    assert status == 204
    status, body = await api.get(f"/api/sessions/{session['id']}", user=owner)
    assert status == 404 and body["error"]["message"] == "session not found"

    facts = [(r["type"], r["data"].get("op")) for r in
             await db.fetch("SELECT type, data FROM outbox WHERE event_id = $1 AND type LIKE 'session.%' ORDER BY seq",
                            eid)]
    assert facts == [("session.changed", "created"), ("session.changed", "updated"), ("session.cancelled", None),
                     ("session.changed", "deleted")]


async def test_room_conflict_is_409_naming_the_session(api, owner, event):
    eid = event["id"]
    keynote = await add_session(api, owner, eid, title="Keynote", starts_at=at(1), ends_at=at(2), room="Hall A")
    status, body = await api.post(f"/api/events/{eid}/sessions", user=owner, json={
        "title": "Clash", "starts_at": at(1.5), "ends_at": at(2.5), "room": "Hall A"})
    assert status == 409 and body["error"]["code"] == "schedule_conflict"
    assert "Keynote" in body["error"]["message"]
    assert body["error"]["details"]["room"] == "Hall A"
    assert [c["session_id"] for c in body["error"]["details"]["conflicts"]] == [keynote["id"]]
    # back-to-back, another room, or no room at all are fine
    await add_session(api, owner, eid, title="Next", starts_at=at(2), ends_at=at(3), room="Hall A")
    await add_session(api, owner, eid, title="Parallel", starts_at=at(1.5), ends_at=at(2.5), room="Hall B")
    await add_session(api, owner, eid, title="Hallway", starts_at=at(1.5), ends_at=at(2.5), room="")
    # moving a session onto another one conflicts too
    parallel = await add_session(api, owner, eid, title="Later", starts_at=at(4), ends_at=at(5), room="Hall B")
    status, body = await api.patch(f"/api/sessions/{parallel['id']}", user=owner, json={"room": "Hall A"})
    assert status == 200
    status, body = await api.patch(f"/api/sessions/{parallel['id']}", user=owner, json={"starts_at": at(2.5)})
    assert status == 409 and body["error"]["details"]["conflicts"][0]["title"] == "Next"
    # a cancelled session frees its room
    status, _ = await api.post(f"/api/sessions/{keynote['id']}/cancel", user=owner)
    await add_session(api, owner, eid, title="Replacement", starts_at=at(1), ends_at=at(2), room="Hall A")


async def test_exclusion_constraint_is_translated(api, owner, event, db):
    """Bypassing the pre-check, the database still refuses, and the error names the session."""
    from storage import schedule as store

    first = await add_session(api, owner, event["id"], title="First", room="Hall A")
    async with db.transaction("test") as conn:
        with pytest.raises(Exception) as caught:
            await store.insert_session(conn, event_id=uuid.UUID(event["id"]), title="Sneaky", abstract="",
                                       starts_at=datetime.fromisoformat(at(1.5)),
                                       ends_at=datetime.fromisoformat(at(3)), room="Hall A", track="",
                                       capacity=None)
        err = caught.value
        assert getattr(err, "code", None) == "schedule_conflict"
        assert err.details["conflicts"][0]["session_id"] == first["id"]
        # the savepoint kept the transaction usable
        assert await conn.fetchval("SELECT count(*) FROM sessions") == 1


async def test_concurrent_conflicting_sessions_one_wins(api, owner, event, db):
    eid = event["id"]
    bodies = [{"title": f"Race {i}", "starts_at": at(1 + i * 0.25), "ends_at": at(2 + i * 0.25), "room": "Hall R"}
              for i in range(6)]
    results = await asyncio.gather(*(api.post(f"/api/events/{eid}/sessions", user=owner, json=b) for b in bodies))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
    rows = await db.fetch("SELECT starts_at, ends_at FROM sessions WHERE event_id = $1 AND room = 'Hall R' "
                          "ORDER BY starts_at", eid)
    for a, b in zip(rows, rows[1:], strict=False):
        assert a["ends_at"] <= b["starts_at"]
    for status, body in results:
        if status == 409:
            assert body["error"]["code"] == "schedule_conflict" and body["error"]["details"]["conflicts"]
    # versions are gapless: one per created session
    version = await db.fetchval("SELECT schedule_version FROM events WHERE id = $1", eid)
    assert version == statuses.count(201)
    assert [r["version"] for r in await db.fetch(
        "SELECT version FROM schedule_changes WHERE event_id = $1 ORDER BY version", eid)] == list(range(1, version + 1))


async def test_event_times_cannot_strand_sessions(api, owner, event):
    eid = event["id"]
    late = await add_session(api, owner, eid, title="Closing", starts_at=at(8, day=1), ends_at=at(9, day=1))
    status, body = await api.patch(f"/api/events/{eid}", user=owner, json={"ends_at": at(12)})
    assert status == 409 and body["error"]["code"] == "schedule_conflict"
    assert [s["session_id"] for s in body["error"]["details"]["sessions_outside"]] == [late["id"]]
    status, _ = await api.post(f"/api/sessions/{late['id']}/cancel", user=owner)
    status, body = await api.patch(f"/api/events/{eid}", user=owner, json={"ends_at": at(12)})
    assert status == 200


async def test_speakers_crud_and_assignment(api, owner, event, db):
    eid = event["id"]
    ada = await add_speaker(api, owner, eid, name="Ada Lovelace", photo_url="https://img.example.org/ada.jpg",
                            links=[{"label": "Site", "url": "https://ada.example.org"}])
    bob = await add_speaker(api, owner, eid, name="Bob")
    status, body = await api.post(f"/api/events/{eid}/speakers", user=owner, json={
        "name": "X", "photo_url": "ftp://x.org/p.png", "links": [{"label": " ", "url": "javascript:alert(1)"}]})
    assert status == 422 and set(errors_of(body)) == {"photo_url", "links.0.label", "links.0.url"}
    talk = await add_session(api, owner, eid, speaker_ids=[bob["id"]])
    status, body = await api.put(f"/api/sessions/{talk['id']}/speakers/{ada['id']}", user=owner)
    assert status == 200 and body["speaker_ids"] == [bob["id"], ada["id"]]
    status, again = await api.put(f"/api/sessions/{talk['id']}/speakers/{ada['id']}", user=owner)
    assert again["speaker_ids"] == [bob["id"], ada["id"]]
    status, body = await api.delete(f"/api/sessions/{talk['id']}/speakers/{bob['id']}", user=owner)
    assert status == 200 and body["speaker_ids"] == [ada["id"]]
    status, body = await api.patch(f"/api/speakers/{ada['id']}", user=owner, json={"bio": "Analyst."})
    assert status == 200 and body["bio"] == "Analyst." and body["name"] == "Ada Lovelace"
    status, listing = await api.get(f"/api/events/{eid}/speakers", user=owner)
    assert [s["name"] for s in listing["items"]] == ["Ada Lovelace", "Bob"]
    before = await db.fetchval("SELECT schedule_version FROM events WHERE id = $1", eid)
    status, _ = await api.delete(f"/api/speakers/{ada['id']}", user=owner)
    assert status == 204
    status, body = await api.get(f"/api/sessions/{talk['id']}", user=owner)
    assert body["speaker_ids"] == []
    changes = await db.fetch("SELECT version, entity, op, data FROM schedule_changes WHERE event_id = $1 "
                             "AND version > $2 ORDER BY version", eid, before)
    assert [(c["entity"], c["op"]) for c in changes] == [("speaker", "deleted"), ("session", "updated")]
    assert changes[1]["data"]["speaker_ids"] == []
    status, body = await api.get(f"/api/speakers/{ada['id']}", user=owner)
    assert status == 404 and body["error"]["message"] == "speaker not found"


async def test_every_change_is_versioned_with_outbox(api, owner, event, db):
    eid = event["id"]
    speaker = await add_speaker(api, owner, eid)
    session = await add_session(api, owner, eid)
    await api.patch(f"/api/sessions/{session['id']}", user=owner, json={"title": "Renamed"})
    await api.put(f"/api/sessions/{session['id']}/speakers/{speaker['id']}", user=owner)
    await api.patch(f"/api/events/{eid}", user=owner, json={"venue": None})
    await api.post(f"/api/sessions/{session['id']}/cancel", user=owner)
    await api.delete(f"/api/sessions/{session['id']}", user=owner)
    changes = await db.fetch("SELECT * FROM schedule_changes WHERE event_id = $1 ORDER BY version", eid)
    assert [(c["version"], c["entity"], c["op"], list(c["fields"])) for c in changes] == [
        (1, "speaker", "created", []), (2, "session", "created", []), (3, "session", "updated", ["title"]),
        (4, "session", "updated", ["speaker_ids"]), (5, "event", "updated", ["venue"]),
        (6, "session", "updated", ["status"]), (7, "session", "deleted", [])]
    assert all(str(c["changed_by"]) == owner.id and c["changed_at"] for c in changes)
    assert changes[-1]["data"] is None and changes[2]["data"]["title"] == "Renamed"
    facts = await db.fetch("SELECT data FROM outbox WHERE type = 'schedule.changed' AND event_id = $1 ORDER BY seq",
                           eid)
    assert [f["data"]["version"] for f in facts] == list(range(1, 8))
    assert facts[2]["data"] == {
        "event_id": eid, "version": 3, "previous_version": 2,
        "changes": [{"version": 3, "entity": "session", "entity_id": session["id"], "op": "updated",
                     "fields": ["title"], "data": changes[2]["data"]}]}


async def test_cancelled_event_schedule_is_frozen(api, event, db):
    owner = await api.register_2fa()
    from tests.events.helpers import published_event

    live = await published_event(api, owner)
    session = await add_session(api, owner, live["id"])
    await api.post(f"/api/events/{live['id']}/cancel", user=owner)
    status, body = await api.post(f"/api/events/{live['id']}/sessions", user=owner,
                                  json={"title": "More", "starts_at": at(3), "ends_at": at(4)})
    assert status == 409 and body["error"]["code"] == "invalid_state"
    status, body = await api.patch(f"/api/sessions/{session['id']}", user=owner, json={"title": "x"})
    assert status == 409 and body["error"]["code"] == "invalid_state"


async def test_event_shrinking_concurrently_cannot_strand_a_new_session(api, owner, event, db):
    """The bounds are re-checked under the event's row lock: a session created while the event's
    end moves earlier (in another transaction) is refused once that transaction commits."""
    eid = uuid.UUID(event["id"])
    async with db.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("UPDATE events SET ends_at = $2 WHERE id = $1", eid, datetime.fromisoformat(at(10)))
        request = asyncio.ensure_future(api.post(f"/api/events/{eid}/sessions", user=owner, json={
            "title": "Evening", "starts_at": at(11), "ends_at": at(12), "room": "Hall A"}))
        for _ in range(200):  # until the request waits for our lock
            waiting = await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
            if waiting or request.done():
                break
            await asyncio.sleep(0.02)
        assert not request.done()
        await tx.commit()
    status, body = await request
    assert status == 422 and set(errors_of(body)) == {"starts_at", "ends_at"}
    assert await db.fetchval("SELECT count(*) FROM sessions WHERE event_id = $1", eid) == 0
