"""Listing and search of published events: filters, keyset pagination, my events, index use."""

from __future__ import annotations

import uuid

from tests.events.helpers import at, create_event, errors_of, published_event


async def test_list_filters_and_pagination(api):
    owner = await api.register_2fa()
    a = await published_event(api, owner, title="Async Python Summit", description="Coroutines all day",
                              tags=["Python"], starts_at=at(0), ends_at=at(8))
    b = await published_event(api, owner, title="Rust Days", description="Systems programming with async Rust",
                              tags=["rust"], starts_at=at(0, day=10), ends_at=at(8, day=11))
    c = await published_event(api, owner, title="Data Week", description="", tags=["python", "data"],
                              starts_at=at(0, day=20), ends_at=at(8, day=22))
    # same start as c: the id breaks the tie, so pages stay stable
    d = await published_event(api, owner, title="Data Week Satellite", description="", tags=["data"],
                              starts_at=at(0, day=20), ends_at=at(8, day=20))
    await create_event(api, owner, title="Secret Python Draft", tags=["python"])

    status, page = await api.get("/api/events")
    assert status == 200
    assert [e["title"] for e in page["items"]][:2] == ["Async Python Summit", "Rust Days"]
    assert len(page["items"]) == 4 and page["next_cursor"] is None
    assert all("owner_id" not in e and "my_roles" not in e for e in page["items"])

    async def titles(**params) -> list[str]:
        status, body = await api.get("/api/events", params={k: str(v) for k, v in params.items()})
        assert status == 200, body
        return [e["title"] for e in body["items"]]

    assert await titles(q="python") == ["Async Python Summit"]  # the draft is never listed
    assert await titles(q="async") == ["Async Python Summit", "Rust Days"]  # title or description
    assert await titles(q='"data week" -satellite') == ["Data Week"]
    assert await titles(tag="python") == ["Async Python Summit", "Data Week"]
    assert await titles(tag="PYTHON ") == ["Async Python Summit", "Data Week"]
    def in_order(*events) -> list[str]:
        return [e["title"] for e in sorted(events, key=lambda e: (e["starts_at"], e["id"]))]

    # range overlap: an event running into the window counts
    assert await titles(**{"from": at(0, day=11)}) == in_order(b, c, d)
    assert await titles(**{"from": at(9, day=11), "to": at(0, day=21)}) == in_order(c, d)
    assert await titles(**{"from": at(0, day=11), "to": at(0, day=12)}) == ["Rust Days"]
    assert await titles(to=at(1)) == ["Async Python Summit"]
    assert await titles(tag="data", q="satellite") == ["Data Week Satellite"]

    seen = []
    cursor = None
    while True:
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        status, body = await api.get("/api/events", params=params)
        assert status == 200 and len(body["items"]) <= 1
        seen += [e["id"] for e in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [e["id"] for e in sorted([a, b, c, d], key=lambda e: (e["starts_at"], e["id"]))]

    status, body = await api.get("/api/events", params={"cursor": "garbage!"})
    assert status == 422 and list(errors_of(body)) == ["cursor"]
    status, body = await api.get("/api/events", params={"limit": "101"})
    assert status == 422 and list(errors_of(body)) == ["limit"]
    status, body = await api.get("/api/events", params={"from": at(5), "to": at(1)})
    assert status == 422 and list(errors_of(body)) == ["to"]
    status, body = await api.get("/api/events", params={"sort": "title"})
    assert status == 422 and list(errors_of(body)) == ["sort"]


async def test_my_events(api):
    owner = await api.register()
    mod = await api.register()
    mine = await create_event(api, owner, title="Mine", starts_at=at(0, day=3), ends_at=at(5, day=3))
    theirs = await create_event(api, owner, title="Theirs")
    await api.post(f"/api/events/{theirs['id']}/moderators", user=owner, json={"user_id": mod.id})
    status, body = await api.get("/api/me/events", user=owner)
    assert status == 200 and [e["title"] for e in body["items"]] == ["Theirs", "Mine"]
    assert all(e["my_roles"] == ["organizer"] and e["owner_id"] == owner.id for e in body["items"])
    status, body = await api.get("/api/me/events", user=mod)
    assert [(e["id"], e["my_roles"]) for e in body["items"]] == [(theirs["id"], ["moderator"])]
    status, body = await api.get("/api/me/events", user=owner, params={"limit": "1"})
    status, rest = await api.get("/api/me/events", user=owner, params={"limit": "1", "cursor": body["next_cursor"]})
    assert [e["id"] for e in body["items"] + rest["items"]] == [theirs["id"], mine["id"]]
    assert rest["next_cursor"] is None
    status, body = await api.get("/api/me/events")
    assert status == 401


async def test_list_uses_indexes(api, db):
    """A few thousand events: the common list queries are index scans, not sequential scans."""
    owner = await api.register()
    await db.execute(
        """INSERT INTO events (owner_id, slug, title, description, starts_at, ends_at, status, published_at, tags)
           SELECT $1, 'bulk-' || g, 'Bulk event ' || g || CASE WHEN g % 97 = 0 THEN ' kubernetes' ELSE '' END,
                  repeat('Talks, workshops and hallway conversations about '
                         || (ARRAY['python', 'rust', 'data', 'cloud', 'design', 'web'])[g % 6 + 1]
                         || ' for practitioners of every level. ', 4),
                  timestamptz '2030-01-01' + g * interval '3 hours',
                  timestamptz '2030-01-01' + g * interval '3 hours' + interval '2 hours',
                  CASE WHEN g % 10 = 0 THEN 'draft' ELSE 'published' END, now(),
                  CASE WHEN g % 51 = 0 THEN ARRAY['rare'] ELSE ARRAY['common'] END
             FROM generate_series(1, 5000) g""",
        uuid.UUID(owner.id),
    )
    # as autovacuum would: statistics, and GIN pending lists merged into the index proper
    await db.execute("VACUUM ANALYZE events")
    from storage import events as event_store

    queries = {
        "first page": dict(q=None, starts_before=None, ends_after=None, tag=None, after=None),
        "text": dict(q="kubernetes", starts_before=None, ends_after=None, tag=None, after=None),
        "tag": dict(q=None, starts_before=None, ends_after=None, tag="rare", after=None),
    }
    import datetime as dt
    when = dt.datetime(2030, 6, 1, tzinfo=dt.UTC)
    queries["from"] = dict(q=None, starts_before=None, ends_after=when, tag=None, after=None)
    queries["cursor"] = dict(q=None, starts_before=None, ends_after=None, tag=None, after=(when, uuid.uuid4()))
    captured: dict[str, str] = {}

    class Explain:
        def __init__(self, conn):
            self.conn = conn

        async def fetch(self, sql, *args):
            plan = await self.conn.fetch("EXPLAIN " + sql, *args)
            captured["plan"] = "\n".join(r[0] for r in plan)
            return []

    async with db.connection() as conn:
        for name, kwargs in queries.items():
            await event_store.list_published(Explain(conn), limit=21, **kwargs)
            plan = captured["plan"]
            assert "Seq Scan" not in plan, (name, plan)
            assert "Index" in plan, (name, plan)
            if name == "from":  # both halves indexed: the ordered range scan and the GiST period index
                assert "events_published_start" in plan and "events_published_period" in plan, plan
