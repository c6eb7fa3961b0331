"""Calendar: .ics for an event and its schedule parsed back (UIDs, SEQUENCE, STATUS, time zones),
the secret agenda feed (rotate, revoke) and add-to-calendar links."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

from icalendar import Calendar

from tests.notify.support import bookmark, make_event, make_session


async def _ics(napi, path, **kw):
    status, text = await napi.get(path, **kw)
    assert status == 200, text
    assert napi.last_response.content_type == "text/calendar"
    return Calendar.from_ical(text)


def _events(cal):
    return {str(e["uid"]): e for e in cal.walk("VEVENT")}


async def test_event_and_schedule_ics(napi, ndb):
    organizer = await napi.register()
    event = await make_event(ndb, organizer.id, title="Pycon; Berlin, 2030")
    start = event["starts_at"] + timedelta(hours=1)
    keynote = await make_session(ndb, event["id"], starts_at=start, title="Keynote")
    panel = await make_session(ndb, event["id"], starts_at=start + timedelta(hours=2), title="Panel", room="B")

    cal = await _ics(napi, f"/api/events/{event['id']}/calendar.ics")
    (ev,) = cal.walk("VEVENT")
    assert str(ev["summary"]) == "Pycon; Berlin, 2030" and str(ev["uid"]) == f"event-{event['id']}@foyer"
    assert ev.decoded("dtstart") == event["starts_at"] and str(ev["status"]) == "CONFIRMED"
    assert "Congress Hall" in str(ev["location"])

    cal = await _ics(napi, f"/api/events/{event['id']}/schedule.ics")
    assert "schedule" in str(cal["x-wr-calname"]) and str(cal["method"]) == "PUBLISH"
    assert [str(tz["tzid"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/Berlin"]
    evs = _events(cal)
    k = evs[f"session-{keynote['id']}@foyer"]
    assert k.decoded("dtstart") == start and k.decoded("dtstart").tzinfo.key == "Europe/Berlin"
    assert k.decoded("dtend") == start + timedelta(minutes=45)
    assert int(k["sequence"]) == 0 and str(k["location"]).startswith("Room A")

    # A moved session keeps its UID and bumps SEQUENCE once; the other stays at 0.
    await ndb.execute("UPDATE sessions SET starts_at = starts_at + interval '30 minutes', "
                      "ends_at = ends_at + interval '30 minutes' WHERE id = $1", keynote["id"])
    for _ in range(2):
        evs = _events(await _ics(napi, f"/api/events/{event['id']}/schedule.ics"))
    k = evs[f"session-{keynote['id']}@foyer"]
    assert int(k["sequence"]) == 1 and k.decoded("dtstart") == start + timedelta(minutes=30)
    assert int(evs[f"session-{panel['id']}@foyer"]["sequence"]) == 0
    # Cancelled sessions stay, marked CANCELLED, with a higher SEQUENCE.
    await ndb.execute("UPDATE sessions SET status = 'cancelled' WHERE id = $1", panel["id"])
    p = _events(await _ics(napi, f"/api/events/{event['id']}/schedule.ics"))[f"session-{panel['id']}@foyer"]
    assert str(p["status"]) == "CANCELLED" and int(p["sequence"]) == 1

    # Drafts are invisible to others; the organizer sees them.
    draft = await make_event(ndb, organizer.id, status="draft")
    stranger = await napi.register()
    for who in (None, stranger):
        status, body = await napi.get(f"/api/events/{draft['id']}/schedule.ics", user=who)
        assert status == 404 and body["error"]["code"] == "not_found"
    assert (await napi.get(f"/api/events/{draft['id']}/calendar.ics", user=organizer))[0] == 200


async def test_calendar_links(napi, ndb):
    organizer = await napi.register()
    event = await make_event(ndb, organizer.id, title="Rust & Co")
    talk = await make_session(ndb, event["id"], starts_at=event["starts_at"] + timedelta(hours=1))
    status, links = await napi.get(f"/api/events/{event['id']}/calendar-links")
    assert status == 200 and links["ics"].endswith(f"/api/events/{event['id']}/calendar.ics")
    g = parse_qs(urlparse(links["google"]).query)
    assert g["text"] == ["Rust & Co"] and g["ctz"] == ["Europe/Berlin"]
    assert g["dates"][0] == f"{event['starts_at']:%Y%m%dT%H%M%S}Z/{event['ends_at']:%Y%m%dT%H%M%S}Z"
    o = parse_qs(urlparse(links["outlook"]).query)
    assert urlparse(links["outlook"]).netloc == "outlook.live.com" and o["subject"] == ["Rust & Co"]
    assert urlparse(links["office365"]).netloc == "outlook.office.com"
    status, links = await napi.get(f"/api/sessions/{talk['id']}/calendar-links")
    assert status == 200 and "Async all the way" in parse_qs(urlparse(links["google"]).query)["text"][0]


async def test_agenda_feed_is_secret_rotatable_and_revocable(napi, ndb):
    organizer, user = await napi.register(), await napi.register()
    event = await make_event(ndb, organizer.id)
    a = await make_session(ndb, event["id"], starts_at=event["starts_at"] + timedelta(hours=1), title="Mine")
    await make_session(ndb, event["id"], starts_at=event["starts_at"] + timedelta(hours=3), title="Not mine")
    await bookmark(ndb, user.id, a["id"])
    assert (await napi.get("/api/me/calendar-feed", user=user))[1] == {"active": False}
    status, feed = await napi.post("/api/me/calendar-feed", user=user)
    assert status == 201 and feed["webcal_url"].startswith("webcal://foyer.test/cal/")
    path = urlparse(feed["url"]).path
    cal = await _ics(napi, path)
    assert [str(e["summary"]) for e in cal.walk("VEVENT")] == [f"Mine · {event['title']}"]
    assert cal["refresh-interval"] is not None
    status, info = await napi.get("/api/me/calendar-feed", user=user)
    assert info["active"] is True and info["last_fetched_at"] and "url" not in info

    status, rotated = await napi.post("/api/me/calendar-feed", user=user)
    assert rotated["url"] != feed["url"]
    assert (await napi.get(path))[0] == 404
    assert (await napi.get(urlparse(rotated["url"]).path))[0] == 200
    assert (await napi.delete("/api/me/calendar-feed", user=user))[0] == 204
    assert (await napi.get(urlparse(rotated["url"]).path))[0] == 404
    assert (await napi.get("/cal/not-a-token!.ics"))[0] == 404
