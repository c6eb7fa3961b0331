"""Events: create, read, update, publish, cancel, delete; validation and mass assignment."""

from __future__ import annotations

from tests.events.helpers import at, create_event, errors_of, event_body, published_event


async def test_create_get_and_slug(api):
    owner = await api.register("Olga")
    event = await create_event(api, owner)
    assert event["status"] == "draft" and event["slug"] == "pycon-foyer"
    assert event["owner_id"] == owner.id and event["my_roles"] == ["organizer"]
    assert event["tags"] == ["python", "async"] and event["venue"]["country"] == "DE"
    assert event["starts_at"] == "2031-05-12T08:00:00Z" and event["schedule_version"] == 0
    status, got = await api.get(f"/api/events/{event['id']}", user=owner)
    assert status == 200 and got == event
    second = await create_event(api, owner)
    assert second["slug"] == "pycon-foyer-2"
    status, by_slug = await api.get("/api/events/by-slug/pycon-foyer-2", user=owner)
    assert status == 200 and by_slug["id"] == second["id"]


async def test_validation_is_field_level(api):
    user = await api.register()
    bad = event_body(
        title="   ", timezone="Mars/Olympus", ends_at=at(-1), cover_image_url="http://example.org/x.png",
        tags=["ok", "not ok!", "x" * 40], venue={"name": "Hall", "city": "Berlin", "country": "DE", "lat": 10},
    )
    status, body = await api.post("/api/events", user=user, json=bad)
    assert status == 422 and body["error"]["code"] == "validation_failed"
    assert errors_of(body) == {
        "title": "must not be blank",
        "ends_at": "must be after starts_at",
        "timezone": "must be an IANA time zone name such as Europe/Berlin",
        "venue.lon": "give both lat and lon, or neither",
        "cover_image_url": "must be an https:// URL with a host name",
        "tags.1": "must be 1-32 letters, digits or dashes",
        "tags.2": "must be 1-32 letters, digits or dashes",
    }
    # shape errors come from the decoder, with the field path
    status, body = await api.post("/api/events", user=user, json=event_body(venue={
        "name": "Hall", "city": "Berlin", "country": "DE", "lat": 91, "lon": 0}))
    assert status == 422 and list(errors_of(body)) == ["venue.lat"]
    status, body = await api.post("/api/events", user=user, json=event_body(starts_at="2031-05-12T08:00:00"))
    assert status == 422 and list(errors_of(body)) == ["starts_at"]
    status, body = await api.post("/api/events", user=user, json=event_body(title="x" * 201))
    assert status == 422 and list(errors_of(body)) == ["title"]
    status, body = await api.post("/api/events", user=user, json=event_body(live_access="everyone"))
    assert status == 422 and list(errors_of(body)) == ["live_access"]
    status, body = await api.post("/api/events", user=user, json=event_body(tags=["t"] * 11))
    assert status == 422 and list(errors_of(body)) == ["tags"]


async def test_tags_are_normalized(api):
    user = await api.register()
    event = await create_event(api, user, tags=["  Machine Learning ", "machine_learning", "PYTHON", "Café"])
    assert event["tags"] == ["machine-learning", "python", "café"]


async def test_mass_assignment_is_rejected(api, db):
    owner = await api.register()
    other = await api.register()
    for field, value in [("owner_id", other.id), ("status", "published"), ("id", other.id),
                         ("schedule_version", 7), ("role", "admin"), ("slug", "mine")]:
        status, body = await api.post("/api/events", user=owner, json=event_body(**{field: value}))
        assert status == 422, field
        assert body["error"]["details"] == [{"field": field, "message": "unknown field (not settable here)"}]
    event = await create_event(api, owner)
    for field, value in [("owner_id", other.id), ("status", "published"), ("schedule_version", 9),
                         ("published_at", at(0))]:
        status, body = await api.patch(f"/api/events/{event['id']}", user=owner, json={field: value})
        assert status == 422 and body["error"]["details"][0]["field"] == field
    row = await db.fetchrow("SELECT owner_id, status, schedule_version FROM events WHERE id = $1", event["id"])
    assert (str(row["owner_id"]), row["status"], row["schedule_version"]) == (owner.id, "draft", 0)
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_patch_changes_only_given_fields_and_versions_schedule_fields(api, db):
    owner = await api.register()
    event = await create_event(api, owner, cover_image_url="https://img.example.org/c.png")
    eid = event["id"]
    status, body = await api.patch(f"/api/events/{eid}", user=owner, json={"description": "New words"})
    assert status == 200 and body["description"] == "New words" and body["schedule_version"] == 0
    assert body["title"] == event["title"] and body["cover_image_url"] == event["cover_image_url"]
    status, body = await api.patch(f"/api/events/{eid}", user=owner,
                                   json={"title": "Renamed", "cover_image_url": None, "venue": None})
    assert status == 200 and body["title"] == "Renamed" and body["cover_image_url"] is None
    assert body["venue"] is None and body["schedule_version"] == 1 and body["slug"] == event["slug"]
    change = await db.fetchrow("SELECT * FROM schedule_changes WHERE event_id = $1", eid)
    assert (change["entity"], change["op"], list(change["fields"]), str(change["changed_by"])) == \
        ("event", "updated", ["title", "venue"], owner.id)
    assert change["data"]["title"] == "Renamed"
    types = [r["type"] for r in await db.fetch("SELECT type FROM outbox WHERE event_id = $1 ORDER BY seq", eid)]
    assert types == ["event.updated", "schedule.changed", "event.updated"]
    # ends must stay after starts, also when only one side moves
    status, body = await api.patch(f"/api/events/{eid}", user=owner, json={"ends_at": at(-2)})
    assert status == 422 and list(errors_of(body)) == ["ends_at"]
    # a no-op patch changes nothing
    status, body = await api.patch(f"/api/events/{eid}", user=owner, json={"title": "Renamed"})
    assert status == 200 and body["schedule_version"] == 1


async def test_publish_needs_two_factor(api, db):
    owner = await api.register()
    event = await create_event(api, owner)
    status, body = await api.post(f"/api/events/{event['id']}/publish", user=owner)
    assert status == 403 and body["error"]["code"] == "two_factor_required"
    await api.enable_2fa(owner)
    status, body = await api.post(f"/api/events/{event['id']}/publish", user=owner)
    assert status == 200 and body["status"] == "published" and body["published_at"]
    status, body = await api.post(f"/api/events/{event['id']}/publish", user=owner)
    assert status == 409 and body["error"]["code"] == "invalid_state"
    fact = await db.fetchrow("SELECT data FROM outbox WHERE type = 'event.published'")
    assert fact["data"]["event_id"] == event["id"] and fact["data"]["slug"] == event["slug"]


async def test_delete_only_drafts_cancel_published(api, db):
    owner = await api.register_2fa()
    draft = await create_event(api, owner)
    status, _ = await api.delete(f"/api/events/{draft['id']}", user=owner)
    assert status == 204
    status, body = await api.get(f"/api/events/{draft['id']}", user=owner)
    assert status == 404
    live = await published_event(api, owner)
    status, body = await api.delete(f"/api/events/{live['id']}", user=owner)
    assert status == 409 and body["error"]["code"] == "invalid_state" and "cancel" in body["error"]["message"]
    status, body = await api.post(f"/api/events/{live['id']}/cancel", user=owner, json={"reason": "Venue flooded"})
    assert status == 200 and body["status"] == "cancelled" and body["cancel_reason"] == "Venue flooded"
    # cancelled events stay visible, read-only
    stranger = await api.register()
    status, body = await api.get(f"/api/events/{live['id']}", user=stranger)
    assert status == 200 and body["status"] == "cancelled" and "owner_id" not in body
    status, body = await api.patch(f"/api/events/{live['id']}", user=owner, json={"title": "Back"})
    assert status == 409 and body["error"]["code"] == "invalid_state"
    status, body = await api.post(f"/api/events/{live['id']}/cancel", user=owner)
    assert status == 409
    fact = await db.fetchrow("SELECT data FROM outbox WHERE type = 'event.cancelled'")
    assert fact["data"]["reason"] == "Venue flooded" and fact["data"]["event_id"] == live["id"]


async def test_drafts_are_invisible_to_others(api):
    owner = await api.register()
    stranger = await api.register()
    draft = await create_event(api, owner)
    for user in (stranger, None):
        status, body = await api.get(f"/api/events/{draft['id']}", user=user)
        assert status == 404 and body == {"error": {"code": "not_found", "message": "event not found"}}
        status, body = await api.get(f"/api/events/by-slug/{draft['slug']}", user=user)
        assert status == 404
    status, body = await api.patch(f"/api/events/{draft['id']}", user=stranger, json={"title": "Mine"})
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await api.get("/api/events/00000000-0000-0000-0000-000000000000", user=stranger)
    assert status == 404 and body == {"error": {"code": "not_found", "message": "event not found"}}
    status, body = await api.get("/api/events/not-a-uuid")
    assert status == 404


async def test_idempotency_key_on_create(api, db):
    owner = await api.register()
    headers = {"Idempotency-Key": "create-event-1"}
    status1, first = await api.post("/api/events", user=owner, json=event_body(), headers=headers)
    status2, second = await api.post("/api/events", user=owner, json=event_body(), headers=headers)
    assert status1 == status2 == 201 and first == second
    assert await db.fetchval("SELECT count(*) FROM events") == 1
    status, body = await api.post("/api/events", user=owner, json=event_body(title="Other"), headers=headers)
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
