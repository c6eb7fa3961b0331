"""Analytics: aggregates maintained by outbox consumers, checked against a known scenario, after a
redelivery, as CSV, and behind the organizer + 2FA policy."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.analytics.consumers import analytics_consumers
from handlers.api import CORE
from storage import outbox
from tests.events.helpers import add_session, at, create_event
from tests.reach.conftest import wait_until


@pytest.fixture
def settings(settings_factory):
    return settings_factory(argon2_time_cost=1, argon2_memory_kib=8192, relay_poll_seconds=0.1,
                            relay_lease_seconds=2.0)


STREAMS = ("analytics.sales", "analytics.door", "analytics.live", "analytics.reach")


async def caught_up(db) -> None:
    last = await db.fetchval("SELECT coalesce(max(seq), 0) FROM outbox")

    async def done() -> bool:
        rows = await db.fetch("SELECT name, last_seq FROM relay_streams WHERE name = ANY($1::text[])", list(STREAMS))
        return len(rows) == len(STREAMS) and all(r["last_seq"] >= last for r in rows)

    await wait_until(done, timeout=20, what="analytics streams caught up")


async def facts(db, event_id: uuid.UUID, items: list[tuple[str, dict]]) -> None:
    async with db.transaction("test_facts") as conn:
        for type_, data in items:
            await outbox.append(conn, type=type_, event_id=event_id, data=data)


async def scenario(api, db):
    organizer = await api.register_2fa("Organizer")
    event = await create_event(api, organizer)
    eid = uuid.UUID(event["id"])
    session = await add_session(api, organizer, event["id"], title="Keynote", room="Hall A",
                                starts_at=at(1), ends_at=at(2))
    sid = session["id"]
    status, vip = await api.post(f"/api/events/{eid}/ticket-types", user=organizer,
                                 json={"name": "VIP", "price_cents": 5000, "currency": "EUR", "capacity": 10})
    assert status == 201, vip
    status, free = await api.post(f"/api/events/{eid}/ticket-types", user=organizer,
                                  json={"name": "Free", "price_cents": 0, "currency": "EUR", "capacity": 4})
    assert status == 201, free
    u1, u2, t1, t2, t3, fb1, fb2, fb3 = (str(uuid.uuid4()) for _ in range(8))
    paid_order, free_order = str(uuid.uuid4()), str(uuid.uuid4())
    scan_time = datetime.fromisoformat(at(1)) - timedelta(minutes=5)
    await facts(db, eid, [
        ("referral.visited", {"code": "friend1", "channel": "x"}),
        ("referral.visited", {"code": "friend1", "channel": "x"}),
        ("referral.visited", {"code": "friend1", "channel": "x"}),
        ("referral.visited", {"code": "", "channel": ""}),
        ("order.placed", {"order_id": free_order, "user_id": u1, "status": "confirmed", "total_cents": 0,
                          "currency": "EUR", "items": [{"ticket_type_id": free["id"], "quantity": 2,
                                                        "unit_price_cents": 0}]}),
        ("order.placed", {"order_id": paid_order, "user_id": u2, "status": "held", "total_cents": 5000,
                          "currency": "EUR",
                          "items": [{"ticket_type_id": vip["id"], "quantity": 1, "unit_price_cents": 5000}]}),
        ("order.paid", {"order_id": paid_order, "user_id": u2, "total_cents": 5000, "currency": "EUR",
                        "previous_status": "held",
                        "items": [{"ticket_type_id": vip["id"], "quantity": 1, "unit_price_cents": 5000}]}),
        ("ticket.issued", {"order_id": free_order, "user_id": u1, "tickets": [{"id": t1}, {"id": t2}]}),
        ("ticket.issued", {"order_id": paid_order, "user_id": u2, "tickets": [{"id": t3}]}),
        ("referral.converted", {"order_id": paid_order, "code": "friend1", "channel": "x", "amount_cents": 5000,
                                "currency": "EUR"}),
        ("referral.converted", {"order_id": paid_order, "code": "friend1", "channel": "x", "amount_cents": 5000,
                                "currency": "EUR"}),  # a second fact for the same order counts once
        ("order.refunded", {"order_id": paid_order, "user_id": u2, "total_cents": 5000, "currency": "EUR",
                            "amount_cents": 1000, "refunded_cents": 1000, "status": "paid",
                            "voided_ticket_ids": [], "items": []}),
    ])
    await facts(db, eid, [
        ("ticket.checked_in", {"ticket_id": t1, "gate": "Hall A", "scanned_at": scan_time.isoformat(),
                               "direction": "in"}),
        ("ticket.checked_out", {"ticket_id": t1, "gate": "Hall A",
                                "scanned_at": (scan_time + timedelta(minutes=1)).isoformat(), "direction": "out"}),
        ("ticket.checked_in", {"ticket_id": t1, "gate": "Hall A",
                               "scanned_at": (scan_time + timedelta(minutes=2)).isoformat(), "direction": "in"}),
        ("ticket.checked_in", {"ticket_id": t3, "gate": "North", "scanned_at": scan_time.isoformat(),
                               "direction": "in"}),
        ("room.joined", {"room": f"session:{sid}", "user_id": u1}),
        ("room.joined", {"room": f"session:{sid}", "user_id": u2}),
        ("message.posted", {"room": f"session:{sid}", "user_id": u1}),
        ("message.posted", {"room": f"session:{sid}", "user_id": u1}),
        ("message.posted", {"room": f"session:{sid}", "user_id": u1}),
        ("question.asked", {"room": f"session:{sid}", "session_id": sid, "user_id": u2}),
        ("vote.cast", {"room": f"session:{sid}", "user_id": u1}),
        ("vote.cast", {"room": f"session:{sid}", "user_id": u2}),
        ("vote.cast", {"room": f"session:{sid}", "user_id": u2, "changed": True}),  # replaces u2's vote
        ("message.posted", {"room": "lobby", "user_id": u2}),
        # notify's shape: one feedback row (feedback_id) per user and session; changes repeat it
        ("feedback.submitted", {"feedback_id": fb1, "session_id": sid, "rating": 4, "previous_rating": None,
                                "has_comment": False}),
        ("feedback.submitted", {"feedback_id": fb1, "session_id": sid, "rating": 2, "previous_rating": 4,
                                "has_comment": False}),  # changed its mind
        ("feedback.submitted", {"feedback_id": fb2, "session_id": sid, "rating": 5, "previous_rating": None,
                                "has_comment": True}),
        ("feedback.submitted", {"feedback_id": fb3, "session_id": None, "rating": 4, "has_comment": False}),
    ])
    return organizer, event, session, vip, free, (u1, u2, t1, t3)


def check_figures(summary, sales, checkins, engagement, referrals, feedback, heat, live, ids):
    vip_id, free_id, sid = ids
    t = summary["totals"]
    assert (t["orders"], t["registrations"], t["revenue_cents"], t["refunded_cents"]) == (2, 3, 5000, 1000)
    assert (t["tickets_issued"], t["checked_in"], t["checkin_rate"]) == (3, 2, round(2 / 3, 4))
    assert (t["messages"], t["questions"], t["votes"], t["visits"]) == (4, 1, 2, 4)
    by_type = {r["name"]: r for r in sales["by_type"]}
    assert (by_type["VIP"]["sold"], by_type["VIP"]["capacity"], by_type["VIP"]["sell_through"]) == (1, 10, 0.1)
    assert (by_type["Free"]["sold"], by_type["Free"]["sell_through"]) == (2, 0.5)
    assert by_type["VIP"]["revenue_cents"] == 5000
    assert sum(r["registrations"] for r in sales["series"]) == 3
    assert sum(r["refunded_cents"] for r in sales["series"]) == 1000
    assert checkins["checked_in"] == 2 and checkins["tickets_issued"] == 3
    gates = {g["gate"]: g["series"] for g in checkins["gates"]}
    assert sum(p["arrivals"] for p in gates["Hall A"]) == 2 and sum(p["exits"] for p in gates["Hall A"]) == 1
    assert sum(p["arrivals"] for p in gates["North"]) == 1
    by_session = {r["session_id"]: r for r in engagement["sessions"]}
    keynote = by_session[sid]
    assert (keynote["messages"], keynote["questions"], keynote["votes"], keynote["participants"]) == (3, 1, 2, 2)
    assert keynote["title"] == "Keynote"
    lobby = by_session[str(uuid.UUID(int=0))]
    assert (lobby["messages"], lobby["participants"]) == (1, 1)
    sources = {(r["code"], r["channel"]): r for r in referrals["sources"]}
    friend = sources["friend1", "x"]
    assert (friend["visits"], friend["registrations"], friend["orders"], friend["revenue_cents"]) == (3, 1, 1, 4000)
    assert sources["", ""]["visits"] == 1
    results = {r["scope"] + ":" + str(r["session_id"]): r for r in feedback["results"]}
    session_fb = results[f"session:{sid}"]
    assert (session_fb["responses"], session_fb["average"], session_fb["r2"], session_fb["r4"], session_fb["r5"],
            session_fb["comments"]) == (2, 3.5, 1, 0, 1, 1)
    assert results[f"event:{uuid.UUID(int=0)}"]["average"] == 4.0
    rows = {s["session_id"]: s for s in heat["sessions"]}
    # the two room joins (now) and the door scan at the session's room (ticket t1, 5 min before it)
    assert sum(rows[sid]["counts"]) == 3
    rooms = {r["room"]: r["active_users"] for r in live["rooms"]}
    assert rooms == {f"session:{sid}": 2, "lobby": 1}
    assert sum(m["messages"] for m in live["per_minute"]) == 4


async def fetch_all(api, organizer, event_id):
    out = []
    for path in ("", "/sales", "/checkins", "/engagement", "/referrals", "/feedback", "/attendance", "/live"):
        status, body = await api.get(f"/api/events/{event_id}/analytics{path}", user=organizer)
        assert status == 200, (path, body)
        out.append(body)
    return out


async def test_figures_from_a_known_scenario_survive_redelivery(api, db, server):
    organizer, event, session, vip, free, _ = await scenario(api, db)
    await caught_up(db)
    ids = (vip["id"], free["id"], session["id"])
    check_figures(*await fetch_all(api, organizer, event["id"]), ids)

    # A crash after the consumers committed but before the relay moved on: everything is replayed.
    await db.execute("UPDATE relay_streams SET last_txid = 0, last_seq = 0 WHERE name = ANY($1::text[])",
                     list(STREAMS))
    server.app[CORE]  # the node keeps running; its relay re-reads from the start
    await facts(db, uuid.UUID(event["id"]), [("custom.nudge", {})])  # wake the relay
    await caught_up(db)
    check_figures(*await fetch_all(api, organizer, event["id"]), ids)

    # Calling a consumer again with an already-applied event changes nothing (claim in its transaction).
    core = server.app[CORE]
    row = await db.fetchrow("SELECT * FROM outbox WHERE type = 'order.paid'")
    event_obj = outbox.OutboxEvent.from_row(row)
    sales = next(c for c in analytics_consumers(core) if c.name == "analytics.sales")
    await sales.handle(event_obj)
    check_figures(*await fetch_all(api, organizer, event["id"]), ids)

    # CSV export
    status, text = await api.get(f"/api/events/{event['id']}/analytics/sales", user=organizer,
                                 params={"format": "csv", "bucket": "day"})
    assert status == 200
    assert api.last_response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {"bucket", "ticket_type_id", "registrations", "revenue_cents"} <= set(rows[0])
    assert sum(int(r["registrations"]) for r in rows) == 3
    status, text = await api.get(f"/api/events/{event['id']}/analytics/checkins", user=organizer,
                                 params={"format": "csv"})
    assert status == 200 and text.splitlines()[0] == "gate,bucket,arrivals,exits"


async def test_analytics_needs_an_organizer_with_2fa(api):
    owner = await api.register_2fa("Owner")
    event = await create_event(api, owner)
    stranger = await api.register("Stranger")
    status, body = await api.get(f"/api/events/{event['id']}/analytics", user=stranger)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await api.get(f"/api/events/{event['id']}/analytics/sales")
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    no2fa = await api.register("No 2FA")
    own = await create_event(api, no2fa)
    status, body = await api.get(f"/api/events/{own['id']}/analytics/sales", user=no2fa)
    assert (status, body["error"]["code"]) == (403, "two_factor_required")
    status, body = await api.get(f"/api/events/{event['id']}/analytics", user=owner)
    assert status == 200 and body["totals"]["orders"] == 0
    status, body = await api.get(f"/api/events/{uuid.uuid4()}/analytics", user=owner)
    assert status == 404


async def test_live_window_and_unknown_types_are_harmless(api, db):
    owner = await api.register_2fa("Owner")
    event = await create_event(api, owner)
    eid = uuid.UUID(event["id"])
    user = str(uuid.uuid4())
    await facts(db, eid, [("room.joined", {"room": "lobby", "user_id": user}),
                          ("feedback.submitted", {"user_id": user, "rating": 9}),  # invalid: ignored
                          ("message.posted", {"room": "lobby"})])
    await caught_up(db)
    status, live = await api.get(f"/api/events/{eid}/analytics/live", user=owner)
    assert status == 200 and live["rooms"] == [{"room": "lobby", "connected": 0, "active_users": 1}]
    await db.execute("UPDATE analytics_room_activity SET last_seen = $1", datetime.now(UTC) - timedelta(minutes=6))
    status, live = await api.get(f"/api/events/{eid}/analytics/live", user=owner)
    assert live["rooms"] == []
    status, fb = await api.get(f"/api/events/{eid}/analytics/feedback", user=owner)
    assert fb["results"] == []
    assert await db.fetchval("SELECT count(*) FROM relay_dead_letters") == 0


@pytest.mark.multinode
async def test_two_nodes_count_every_fact_once(nodes, rdb, http):
    """Two `run.py serve` nodes both run the relay and the analytics consumers: each fact counts once."""
    from tests.support.api import Api

    env = {"FOYER_RELAY_LEASE_SECONDS": "1.5", "FOYER_RELAY_POLL_SECONDS": "0.1", "FOYER_ARGON2_TIME_COST": "1",
           "FOYER_ARGON2_MEMORY_KIB": "8192"}
    a, b = await asyncio.gather(nodes.start(env=env), nodes.start(env=env))
    api_a = Api(a.url, http)
    owner = await api_a.register_2fa("Owner")
    event = await create_event(api_a, owner)
    eid = uuid.UUID(event["id"])
    for round_ in range(10):
        await facts(rdb, eid, [("message.posted", {"room": "lobby", "user_id": str(uuid.uuid4())})
                               for _ in range(20)])
        if round_ == 4:
            a.kill()  # one node dies mid-stream: its streams move to the other after the lease
    await caught_up(rdb)
    status, body = await Api(b.url, http).get(f"/api/events/{eid}/analytics", user=owner)
    assert status == 200 and body["totals"]["messages"] == 200
    owners = {r["owner"] for r in await rdb.fetch("SELECT owner FROM relay_streams WHERE name LIKE 'analytics.%'")}
    assert owners == {f"test-node-{b.port}"}


async def test_live_figures_are_pushed_to_the_staff_room(settings_factory, app_factory, http):
    """A real Socket.IO client in `staff:{event_id}` receives `analytics:live` with the chat it caused."""
    from tests.live.helpers import Client
    from tests.support.api import Api

    srv = await app_factory(settings_factory(argon2_time_cost=1, argon2_memory_kib=8192, relay_poll_seconds=0.1,
                                             analytics_live_push_seconds=0.3))
    api = Api(str(srv.make_url("/")), http)
    owner = await api.register_2fa("Owner")
    event = await create_event(api, owner, live_access="public")
    status, _ = await api.post(f"/api/events/{event['id']}/publish", user=owner)
    assert status == 200
    client = Client(str(srv.make_url("/")), owner.access_token, owner)
    await client.connect()
    try:
        await client.join(f"staff:{event['id']}")
        await client.join(f"event:{event['id']}")
        ack = await client.send(f"event:{event['id']}", "hello from the lobby")
        assert ack["ok"], ack

        def pushed():
            return [d for d in client.events.get("analytics:live", []) if d.get("messages_last_minute")]

        await wait_until(pushed, timeout=15, what="analytics:live push")
        figures = pushed()[-1]
        assert figures["event_id"] == event["id"] and figures["room"] == f"staff:{event['id']}"
        rooms = {r["room"]: r for r in figures["rooms"]}
        assert rooms[f"event:{event['id']}"]["active_users"] == 1
        assert sum(m["messages"] for m in figures["per_minute"]) == 1
    finally:
        await client.disconnect()
