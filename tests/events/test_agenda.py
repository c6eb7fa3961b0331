"""Personal agenda: bookmark sessions of viewable events only, idempotent, time-ordered."""

from __future__ import annotations

from tests.events.helpers import add_session, at, create_event, published_event


async def test_agenda(api):
    owner = await api.register_2fa()
    live = await published_event(api, owner)
    late = await add_session(api, owner, live["id"], title="Late", starts_at=at(5), ends_at=at(6))
    early = await add_session(api, owner, live["id"], title="Early", starts_at=at(1), ends_at=at(2))
    draft = await create_event(api, owner, title="Secret")
    hidden = await add_session(api, owner, draft["id"], title="Hidden")
    fan = await api.register()

    status, body = await api.put(f"/api/me/agenda/{late['id']}", user=fan)
    assert status == 200 and body["added"] is True and body["session_id"] == late["id"]
    status, again = await api.put(f"/api/me/agenda/{late['id']}", user=fan)
    assert status == 200 and again["added"] is False and again["added_at"] == body["added_at"]
    await api.put(f"/api/me/agenda/{early['id']}", user=fan)
    # a draft's session looks exactly like a missing one
    status, body = await api.put(f"/api/me/agenda/{hidden['id']}", user=fan)
    assert status == 404 and body == {"error": {"code": "not_found", "message": "session not found"}}
    status, body = await api.put("/api/me/agenda/00000000-0000-0000-0000-000000000000", user=fan)
    assert status == 404 and body == {"error": {"code": "not_found", "message": "session not found"}}
    status, body = await api.put(f"/api/me/agenda/{late['id']}")
    assert status == 401

    status, agenda = await api.get("/api/me/agenda", user=fan)
    assert status == 200
    assert [i["session"]["title"] for i in agenda["items"]] == ["Early", "Late"]
    assert agenda["items"][0]["event"] == {"id": live["id"], "slug": live["slug"], "title": live["title"],
                                           "timezone": "Europe/Berlin", "status": "published"}
    status, filtered = await api.get("/api/me/agenda", user=fan, params={"event_id": draft["id"]})
    assert filtered["items"] == []

    # the owner may bookmark in their own draft; cancelled sessions cannot be bookmarked
    status, _ = await api.put(f"/api/me/agenda/{hidden['id']}", user=owner)
    assert status == 200
    await api.post(f"/api/sessions/{early['id']}/cancel", user=owner)
    status, body = await api.put(f"/api/me/agenda/{early['id']}", user=owner)
    assert status == 409 and body["error"]["code"] == "invalid_state"
    status, agenda = await api.get("/api/me/agenda", user=fan)
    assert [i["session"]["status"] for i in agenda["items"]] == ["cancelled", "scheduled"]

    status, _ = await api.delete(f"/api/me/agenda/{late['id']}", user=fan)
    assert status == 204
    status, _ = await api.delete(f"/api/me/agenda/{late['id']}", user=fan)
    assert status == 204
    status, agenda = await api.get("/api/me/agenda", user=fan)
    assert [i["session"]["title"] for i in agenda["items"]] == ["Early"]
    # deleting the session removes it from everyone's agenda
    await api.delete(f"/api/sessions/{early['id']}", user=owner)
    status, agenda = await api.get("/api/me/agenda", user=fan)
    assert agenda["items"] == []
