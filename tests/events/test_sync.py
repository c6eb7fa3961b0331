"""GET /schedule: full snapshot with version + ETag, 304 on If-None-Match, ?since= deltas."""

from __future__ import annotations

from tests.events.helpers import add_session, add_speaker, at, published_event


def apply_delta(schedule: dict, delta: dict) -> dict:
    """What an offline client does with a delta: upsert/remove by id, take the new version."""
    out = {"version": delta["version"], "event": schedule["event"],
           "sessions": {s["id"]: s for s in schedule["sessions"]},
           "speakers": {s["id"]: s for s in schedule["speakers"]}}
    for change in delta["changes"]:
        if change["entity"] == "event":
            out["event"] = change["data"]
            continue
        table = out["sessions" if change["entity"] == "session" else "speakers"]
        if change["op"] == "deleted":
            table.pop(change["entity_id"], None)
        else:
            table[change["entity_id"]] = change["data"]
    return out


def normalized(schedule: dict) -> dict:
    return {"version": schedule["version"], "event": schedule["event"],
            "sessions": {s["id"]: s for s in schedule["sessions"]} if isinstance(schedule["sessions"], list)
            else schedule["sessions"],
            "speakers": {s["id"]: s for s in schedule["speakers"]} if isinstance(schedule["speakers"], list)
            else schedule["speakers"]}


async def test_schedule_etag_and_deltas(api, http, server):
    owner = await api.register_2fa()
    event = await published_event(api, owner)
    eid = event["id"]
    ada = await add_speaker(api, owner, eid, name="Ada")
    s1 = await add_session(api, owner, eid, title="One", speaker_ids=[ada["id"]])
    s2 = await add_session(api, owner, eid, title="Two", starts_at=at(2), ends_at=at(3))

    status, full = await api.get(f"/api/events/{eid}/schedule")  # anonymous may read a published schedule
    assert status == 200
    etag = api.last_response.headers["ETag"]
    assert full["version"] == 4 and full["event"]["title"] == event["title"]
    assert [s["title"] for s in full["sessions"]] == ["One", "Two"] and full["speakers"][0]["name"] == "Ada"
    assert full["sessions"][0] == s1

    # unchanged: 304 without a body
    async with http.get(server.make_url(f"/api/events/{eid}/schedule"), headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304 and resp.headers["ETag"] == etag and await resp.read() == b""

    # an offline client changes nothing locally; the server moves on
    await api.patch(f"/api/sessions/{s1['id']}", user=owner, json={"room": "Hall B"})
    await api.delete(f"/api/sessions/{s2['id']}", user=owner)
    bob = await add_speaker(api, owner, eid, name="Bob")
    await api.patch(f"/api/events/{eid}", user=owner, json={"title": "Renamed conf"})
    async with http.get(server.make_url(f"/api/events/{eid}/schedule"), headers={"If-None-Match": etag}) as resp:
        assert resp.status == 200 and resp.headers["ETag"] != etag

    status, delta = await api.get(f"/api/events/{eid}/schedule", params={"since": full["version"]})
    assert status == 200 and delta["since"] == 4 and delta["version"] == 8
    assert [(c["version"], c["entity"], c["op"]) for c in delta["changes"]] == [
        (5, "session", "updated"), (6, "session", "deleted"), (7, "speaker", "created"), (8, "event", "updated")]
    assert delta["changes"][1]["data"] is None and delta["changes"][2]["entity_id"] == bob["id"]
    delta_etag = api.last_response.headers["ETag"]

    status, now = await api.get(f"/api/events/{eid}/schedule")
    assert normalized(apply_delta(full, delta)) == normalized(now)

    async with http.get(server.make_url(f"/api/events/{eid}/schedule"), params={"since": "4"},
                        headers={"If-None-Match": f'W/{delta_etag}, "other"'}) as resp:
        assert resp.status == 304
    status, empty = await api.get(f"/api/events/{eid}/schedule", params={"since": 8})
    assert status == 200 and empty["changes"] == []
    status, body = await api.get(f"/api/events/{eid}/schedule", params={"since": 9})
    assert status == 422 and body["error"]["details"][0]["field"] == "since"
    status, body = await api.get(f"/api/events/{eid}/schedule", params={"since": -1})
    assert status == 422


async def test_draft_schedule_and_304_do_not_leak(api, http, server):
    owner = await api.register()
    from tests.events.helpers import create_event

    draft = await create_event(api, owner)
    status, full = await api.get(f"/api/events/{draft['id']}/schedule", user=owner)
    assert status == 200 and full["version"] == 0
    etag = api.last_response.headers["ETag"]
    stranger = await api.register()
    async with http.get(server.make_url(f"/api/events/{draft['id']}/schedule"),
                        headers={"If-None-Match": etag, **stranger.headers}) as resp:
        assert resp.status == 404 and "ETag" not in resp.headers
    status, body = await api.get(f"/api/events/{draft['id']}/schedule", params={"since": 0})
    assert status == 404
