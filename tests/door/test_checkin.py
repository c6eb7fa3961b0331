"""Check-in over HTTP on one node: results, nonce idempotency, entry/exit, roles, stats, outbox."""

from __future__ import annotations

import asyncio
import uuid

from domain.tickets.codes import b64u, unb64u
from tests.door.support import add_member, buy_free, new_door, nonce, now_iso, scan


async def test_scan_ok_then_already_checked_in_with_first_scan(api, db):
    door = await new_door(api, db)
    buyer = await api.register("Ada")
    (ticket,) = await buy_free(api, door, buyer)
    status, body = await scan(api, door, door.organizer, ticket["code"], gate="North")
    assert status == 200, body
    assert body["result"] == "ok" and body["ticket"]["id"] == ticket["id"]
    assert body["ticket"]["holder_name"] == "Ada" and body["ticket"]["ticket_type"] == "Free"
    assert "first_scan" not in body
    status, again = await scan(api, door, door.organizer, ticket["code"], gate="South")
    assert status == 200 and again["result"] == "already_checked_in"
    assert again["first_scan"]["gate"] == "North"
    assert again["first_scan"]["scanned_at"] == body["scanned_at"]


async def test_nonce_replays_first_answer_and_reuse_is_refused(api, db):
    door = await new_door(api, db)
    buyer = await api.register()
    t1, t2 = await buy_free(api, door, buyer, quantity=2)
    n = nonce()
    at = now_iso()
    first = await scan(api, door, door.organizer, t1["code"], gate="A", nonce_=n, scanned_at=at)
    assert first[0] == 200 and first[1]["result"] == "ok"
    # the same scan retried (even concurrently) answers the first answer, not already_checked_in
    retries = await asyncio.gather(*(scan(api, door, door.organizer, t1["code"], gate="A", nonce_=n, scanned_at=at)
                                     for _ in range(4)))
    assert all(r == first for r in retries), retries
    status, body = await scan(api, door, door.organizer, t2["code"], gate="A", nonce_=n)
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    rows = await db.fetchval("SELECT count(*) FROM checkin_scans WHERE event_id = $1::uuid", door.event_id)
    assert rows == 1
    counted = await db.fetchval("SELECT sum(n) FROM checkin_gate_counts WHERE event_id = $1::uuid", door.event_id)
    assert counted == 1


async def test_concurrent_scans_on_one_node_exactly_one_ok(api, db):
    door = await new_door(api, db)
    buyer = await api.register()
    tickets = await buy_free(api, door, buyer, quantity=5)
    calls = [scan(api, door, door.organizer, t["code"], gate=g) for t in tickets for g in ("A", "B", "C")]
    results = await asyncio.gather(*calls)
    by_ticket: dict[str, list[str]] = {}
    for status, body in results:
        assert status == 200, body
        by_ticket.setdefault(body["ticket"]["id"], []).append(body["result"])
    for outcomes in by_ticket.values():
        assert sorted(outcomes) == ["already_checked_in", "already_checked_in", "ok"]


async def test_invalid_tampered_wrong_event_revoked(api, db):
    door = await new_door(api, db)
    other = await new_door(api, db, organizer=door.organizer)
    buyer = await api.register()
    (ticket,) = await buy_free(api, door, buyer)
    (foreign,) = await buy_free(api, other, buyer)
    prefix, payload, sig = ticket["code"].split(".")
    raw = bytearray(unb64u(payload))
    raw[-1] ^= 1  # another generation, same signature: must not verify
    tampered = ".".join((prefix, b64u(bytes(raw)), sig))
    cases = {"garbage": "invalid", tampered: "invalid", ticket["code"][:-3] + "AAA": "invalid",
             foreign["code"]: "wrong_event"}
    for code, expected in cases.items():
        status, body = await scan(api, door, door.organizer, code)
        assert status == 200 and body["result"] == expected, (code, body)
        assert "ticket" not in body
    # transfer: the old code is revoked, the new one works
    friend = await api.register("Friend")
    status, _ = await api.post(f"/api/tickets/{ticket['id']}/transfer", user=buyer, json={"to_user_id": friend.id})
    assert status == 200
    status, body = await scan(api, door, door.organizer, ticket["code"])
    assert body["result"] == "revoked" and body["ticket"]["id"] == ticket["id"]
    status, mine = await api.get("/api/me/tickets", user=friend)
    status, body = await scan(api, door, door.organizer, mine[0]["code"])
    assert body["result"] == "ok" and body["ticket"]["holder_name"] == "Friend"
    # an organizer cancels the (free) order: its tickets are void
    (t2,) = await buy_free(api, door, buyer)
    status, _ = await api.post(f"/api/orders/{t2['order_id']}/cancel", user=door.organizer, json={})
    assert status == 200
    status, body = await scan(api, door, door.organizer, t2["code"])
    assert body["result"] == "revoked"
    # a valid ticket whose order is not paid (defensive: cannot happen through the API)
    (t3,) = await buy_free(api, door, buyer)
    await db.execute("UPDATE orders SET status = 'held', expires_at = now() + interval '1 hour' WHERE id = $1::uuid",
                     t3["order_id"])
    status, body = await scan(api, door, door.organizer, t3["code"])
    assert body["result"] == "not_paid"


async def test_entry_exit_reentry_and_stats(api, db):
    door = await new_door(api, db)
    buyer = await api.register()
    a, b = await buy_free(api, door, buyer, quantity=2)
    org = door.organizer
    assert (await scan(api, door, org, a["code"], gate="A"))[1]["result"] == "ok"
    assert (await scan(api, door, org, b["code"], gate="B"))[1]["result"] == "ok"
    status, out = await scan(api, door, org, a["code"], gate="B", direction="out")
    assert out["result"] == "ok" and out["entry"]["gate"] == "A"
    assert (await scan(api, door, org, a["code"], gate="B", direction="out"))[1]["result"] == "not_checked_in"
    assert (await scan(api, door, org, a["code"], gate="B"))[1]["result"] == "ok"  # re-entry
    assert (await scan(api, door, org, a["code"], gate="A"))[1]["result"] == "already_checked_in"
    await scan(api, door, org, "nope", gate="A")
    status, stats = await api.get(f"/api/events/{door.event_id}/checkins/stats", user=org)
    assert status == 200, stats
    assert (stats["tickets"], stats["checked_in"], stats["inside"], stats["entries"], stats["exits"]) == (2, 2, 2, 3, 1)
    gates = {g["gate"]: g for g in stats["gates"]}
    assert gates["A"]["entries"] == 1 and gates["A"]["rejected"] == {"already_checked_in": 1, "invalid": 1}
    assert gates["B"]["entries"] == 2 and gates["B"]["exits"] == 1 and gates["B"]["rejected"] == {"not_checked_in": 1}
    assert gates["B"]["inside"] == 2 and gates["A"]["inside"] == 0
    facts = await db.fetch("SELECT type, data FROM outbox WHERE event_id = $1::uuid AND type LIKE 'ticket.checked_%' "
                           "ORDER BY seq", door.event_id)
    assert [f["type"] for f in facts] == ["ticket.checked_in", "ticket.checked_in", "ticket.checked_out",
                                         "ticket.checked_in"]
    first = facts[0]["data"]
    assert {k: first[k] for k in ("ticket_id", "event_id", "gate", "direction")} == {
        "ticket_id": a["id"], "event_id": door.event_id, "gate": "A", "direction": "in"}
    assert first["scanned_at"]


async def test_roles_who_may_scan_and_see_stats(api, db):
    door = await new_door(api, db)
    buyer = await api.register()
    tickets = await buy_free(api, door, buyer, quantity=3)
    staff, moderator, stranger = await api.register(), await api.register(), await api.register()
    await add_member(api, door, staff, "staff")
    await add_member(api, door, moderator, "moderator")
    assert (await scan(api, door, staff, tickets[0]["code"]))[1]["result"] == "ok"
    assert (await scan(api, door, moderator, tickets[1]["code"]))[1]["result"] == "ok"
    status, body = await scan(api, door, buyer, tickets[2]["code"])  # an attendee may not scan
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await scan(api, door, stranger, tickets[2]["code"])
    assert status == 403
    status, _ = await api.get(f"/api/events/{door.event_id}/checkins/stats", user=staff)
    assert status == 200
    status, body = await api.get(f"/api/events/{door.event_id}/checkins/stats", user=stranger)
    assert status == 403
    # another organizer's draft event: not found, whatever the caller tries
    other = await new_door(api, db)
    await db.execute("UPDATE events SET status = 'draft', published_at = NULL WHERE id = $1::uuid", other.event_id)
    for path in ("checkins/stats", "checkin-list"):
        status, body = await api.get(f"/api/events/{other.event_id}/{path}", user=door.organizer)
        assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await scan(api, other, staff, tickets[2]["code"])
    assert status == 404
    status, body = await api.get(f"/api/events/{uuid.uuid4()}/checkins/stats", user=door.organizer)
    assert status == 404
    status, body = await api.post(f"/api/events/{door.event_id}/checkins",
                                  json={"code": "x", "gate": "A", "nonce": nonce(), "scanned_at": now_iso()})
    assert status == 401


async def test_scan_validation(api, db):
    door = await new_door(api, db)
    org = door.organizer
    bad = [
        {"code": "x", "gate": "A", "nonce": "short", "scanned_at": now_iso()},
        {"code": "x", "gate": "A", "nonce": nonce(), "scanned_at": now_iso(3600)},
        {"code": "x", "gate": "A", "nonce": nonce(), "scanned_at": "2030-01-01T10:00:00"},
        {"code": "x", "gate": "", "nonce": nonce(), "scanned_at": now_iso()},
        {"code": "x", "gate": "A", "nonce": nonce(), "scanned_at": now_iso(), "direction": "sideways"},
        {"code": "x", "gate": "A", "nonce": nonce(), "scanned_at": now_iso(), "result": "ok"},
    ]
    for payload in bad:
        status, body = await api.post(f"/api/events/{door.event_id}/checkins", user=org, json=payload)
        assert status == 422 and body["error"]["code"] == "validation_failed", (payload, body)
