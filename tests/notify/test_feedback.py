"""Feedback: who may rate what and when, one changeable rating each, organizer results per
session/speaker/event with 2FA, comments for organizers only, the outbox fact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.notify.support import add_attendee, make_event, make_session


async def _speaker(db, event_id, name, *session_ids):
    sid = await db.fetchval("INSERT INTO speakers (event_id, name) VALUES ($1, $2) RETURNING id", event_id, name)
    for s in session_ids:
        await db.execute("INSERT INTO session_speakers (session_id, speaker_id) VALUES ($1, $2)", s, sid)
    return sid


async def test_feedback_rules_and_results(napi, ndb):
    organizer = await napi.register("Org")
    a, b, outsider = await napi.register("A"), await napi.register("B"), await napi.register("Out")
    now = datetime.now(UTC)
    event = await make_event(ndb, organizer.id, starts_at=now - timedelta(hours=2))
    past = await make_session(ndb, event["id"], starts_at=now - timedelta(hours=1), title="Past")
    live = await make_session(ndb, event["id"], starts_at=now - timedelta(minutes=5), title="Live", room="B")
    future = await make_session(ndb, event["id"], starts_at=now + timedelta(hours=1), title="Future")
    dropped = await make_session(ndb, event["id"], starts_at=now - timedelta(hours=1), title="Dropped", room="C")
    await ndb.execute("UPDATE sessions SET status = 'cancelled' WHERE id = $1", dropped["id"])
    ada = await _speaker(ndb, event["id"], "Ada", past["id"], live["id"])
    await _speaker(ndb, event["id"], "Bob", future["id"])
    for u in (a, b):
        await add_attendee(ndb, event["id"], u.id)

    status, body = await napi.put(f"/api/sessions/{past['id']}/feedback", user=a,
                                  json={"rating": 2, "comment": "  Too fast  "})
    assert status == 200 and body["rating"] == 2 and body["comment"] == "Too fast" and body["changed"] is False
    status, body = await napi.put(f"/api/sessions/{past['id']}/feedback", user=a, json={"rating": 4})
    assert status == 200 and body["changed"] is True and body["comment"] is None
    assert (await napi.get(f"/api/sessions/{past['id']}/feedback", user=a))[1]["rating"] == 4
    assert (await napi.get(f"/api/sessions/{past['id']}/feedback", user=b))[0] == 404
    await napi.put(f"/api/sessions/{past['id']}/feedback", user=b, json={"rating": 5, "comment": "Great <3"})
    await napi.put(f"/api/sessions/{live['id']}/feedback", user=b, json={"rating": 3, "comment": "ok"})
    await napi.put(f"/api/events/{event['id']}/feedback", user=a, json={"rating": 5, "comment": "Loved it"})

    cases = [
        (future["id"], a, {"rating": 5}, 409, "feedback_not_open"),
        (dropped["id"], a, {"rating": 5}, 409, "invalid_state"),
        (past["id"], outsider, {"rating": 5}, 403, "forbidden"),
        (past["id"], a, {"rating": 6}, 422, "validation_failed"),
        (past["id"], a, {"rating": 3, "comment": "x" * 2001}, 422, "validation_failed"),
        (past["id"], a, {"rating": 3, "user_id": b.id}, 422, "validation_failed"),
        (uuid.uuid4(), a, {"rating": 3}, 404, "not_found"),
    ]
    for session_id, user, body, status, code in cases:
        got, err = await napi.put(f"/api/sessions/{session_id}/feedback", user=user, json=body)
        assert (got, err["error"]["code"]) == (status, code), (session_id, body, err)
    _, err = await napi.put(f"/api/sessions/{future['id']}/feedback", user=a, json={"rating": 5})
    assert err["error"]["details"]["opens_at"] == future["starts_at"].isoformat()

    facts = await ndb.fetch("SELECT data FROM outbox WHERE type = 'feedback.submitted' ORDER BY seq")
    assert len(facts) == 5 and facts[1]["data"]["previous_rating"] == 2 and facts[1]["data"]["rating"] == 4
    assert facts[0]["data"]["speaker_ids"] == [str(ada)] and facts[0]["data"]["has_comment"] is True
    assert all("comment" not in f["data"] and "user_id" not in f["data"] for f in facts)

    # Results: organizers with 2FA only.
    assert (await napi.get(f"/api/events/{event['id']}/feedback/results", user=a))[1]["error"]["code"] == "forbidden"
    status, err = await napi.get(f"/api/events/{event['id']}/feedback/results", user=organizer)
    assert status == 403 and err["error"]["code"] == "two_factor_required"
    await napi.enable_2fa(organizer)
    status, res = await napi.get(f"/api/events/{event['id']}/feedback/results", user=organizer)
    assert status == 200, res
    by_title = {s["title"]: s for s in res["sessions"]}
    assert by_title["Past"]["count"] == 2 and by_title["Past"]["average"] == 4.5
    assert by_title["Past"]["distribution"] == [0, 0, 0, 1, 1] and by_title["Past"]["comments"] == 1
    assert by_title["Future"]["count"] == 0 and by_title["Future"]["average"] is None
    speakers = {s["name"]: s for s in res["speakers"]}
    assert speakers["Ada"] == {"speaker_id": str(ada), "name": "Ada", "sessions": 2, "count": 3, "average": 4.0}
    assert speakers["Bob"]["count"] == 0
    assert res["event"] == {"count": 1, "average": 5.0, "distribution": [0, 0, 0, 0, 1], "comments": 1}

    # Comments, newest first, paginated; attendees cannot read them.
    status, page = await napi.get(f"/api/events/{event['id']}/feedback/comments", user=organizer,
                                  params={"limit": 2})
    assert status == 200 and [c["comment"] for c in page["comments"]] == ["Loved it", "ok"]
    assert "user_id" not in page["comments"][0] and page["next_cursor"]
    status, page2 = await napi.get(f"/api/events/{event['id']}/feedback/comments", user=organizer,
                                   params={"limit": 2, "cursor": page["next_cursor"]})
    assert [c["comment"] for c in page2["comments"]] == ["Great <3"] and page2["next_cursor"] is None
    status, only = await napi.get(f"/api/events/{event['id']}/feedback/comments", user=organizer,
                                  params={"session_id": str(past["id"])})
    assert [c["session_title"] for c in only["comments"]] == ["Past"]
    assert (await napi.get(f"/api/events/{event['id']}/feedback/comments", user=b))[0] == 403


async def test_event_feedback_opens_at_event_start(napi, ndb):
    organizer, a = await napi.register(), await napi.register()
    event = await make_event(ndb, organizer.id, starts_at=datetime.now(UTC) + timedelta(days=1))
    await add_attendee(ndb, event["id"], a.id)
    status, err = await napi.put(f"/api/events/{event['id']}/feedback", user=a, json={"rating": 4})
    assert status == 409 and err["error"]["code"] == "feedback_not_open"
    draft = await make_event(ndb, organizer.id, status="draft", starts_at=datetime.now(UTC) - timedelta(days=1))
    await add_attendee(ndb, draft["id"], a.id)
    status, err = await napi.put(f"/api/events/{draft['id']}/feedback", user=a, json={"rating": 4})
    assert status == 404  # a draft is invisible to attendees
