"""Offline scanners: the signed check-in list (full and delta) and batches with conflicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from domain.checkin.lists import check_offline, verify_list
from domain.tickets.codes import b64u, unb64u
from tests.door.support import buy_free, new_door, nonce


def _at(minutes: float) -> str:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return (base + timedelta(minutes=minutes)).isoformat()


def _scan(code: str, gate: str, minutes: float, direction: str = "in", n: str | None = None) -> dict:
    return {"code": code, "gate": gate, "nonce": n or nonce(), "scanned_at": _at(minutes), "direction": direction}


async def _batch(api, door, scans):
    status, body = await api.post(f"/api/events/{door.event_id}/checkins/batch", user=door.organizer,
                                  json={"scans": scans})
    assert status == 200, body
    return body["results"]


async def _first_scan(db, ticket_id):
    return await db.fetchrow("SELECT gate, scanned_at, nonce FROM checkin_entries WHERE ticket_id = $1::uuid "
                             "AND exited_at IS NULL", ticket_id)


async def test_batch_conflicts_earliest_wins_whatever_the_upload_order(api, db):
    door = await new_door(api, db)
    buyer = await api.register()
    t1, t2, t3 = await buy_free(api, door, buyer, quantity=3)
    # one batch with two gates scanning t1 (listed latest first): the earlier scan wins
    late, early = _scan(t1["code"], "A", 5), _scan(t1["code"], "B", 2)
    res = await _batch(api, door, [late, early, _scan(t2["code"], "A", 1)])
    assert [r["result"] for r in res] == ["already_checked_in", "ok", "ok"]
    assert res[0]["conflict"]["gate"] == "B" and res[0]["conflict"]["nonce"] == early["nonce"]
    assert (await _first_scan(db, t1["id"]))["gate"] == "B"
    # same time at two gates: the gate name breaks the tie, then the nonce
    tie_b, tie_a = _scan(t3["code"], "B", 3), _scan(t3["code"], "A", 3)
    res = await _batch(api, door, [tie_b, tie_a])
    assert [r["result"] for r in res] == ["already_checked_in", "ok"]
    # two scanners uploading separately: the later upload with the earlier scan takes the entry over
    t4, t5 = await buy_free(api, door, buyer, quantity=2)
    gate_c, gate_d = _scan(t4["code"], "C", 10), _scan(t4["code"], "D", 7)
    first = await _batch(api, door, [gate_c])
    second = await _batch(api, door, [gate_d])
    assert first[0]["result"] == "ok" and second[0]["result"] == "ok"
    assert second[0]["superseded"]["gate"] == "C" and second[0]["superseded"]["nonce"] == gate_c["nonce"]
    row = await _first_scan(db, t4["id"])
    assert (row["gate"], row["nonce"]) == ("D", gate_d["nonce"])
    # ...and the other way round ends in the same state
    gate_c2, gate_d2 = _scan(t5["code"], "C", 10), _scan(t5["code"], "D", 7)
    await _batch(api, door, [gate_d2])
    res = await _batch(api, door, [gate_c2])
    assert res[0]["result"] == "already_checked_in" and res[0]["first_scan"]["gate"] == "D"
    row = await _first_scan(db, t5["id"])
    assert (row["gate"], row["nonce"]) == ("D", gate_d2["nonce"])
    # a re-upload of the same batch answers the same
    again = await _batch(api, door, [gate_c2])
    assert again == res
    # exits and re-entry offline, in time order whatever the list order
    seq = [_scan(t2["code"], "A", 30), _scan(t2["code"], "B", 20, "out"), _scan(t2["code"], "B", 25, "out")]
    res = await _batch(api, door, seq)
    assert [r["result"] for r in res] == ["ok", "ok", "not_checked_in"]
    # a scan older than a recorded exit belongs to that stay
    res = await _batch(api, door, [_scan(t2["code"], "E", 15)])
    assert res[0]["result"] == "already_checked_in" and res[0]["first_scan"]["exited_at"]
    status, body = await api.post(f"/api/events/{door.event_id}/checkins/batch", user=buyer,
                                  json={"scans": [_scan(t2["code"], "A", 1)]})
    assert status == 403
    status, body = await api.post(f"/api/events/{door.event_id}/checkins/batch", user=door.organizer,
                                  json={"scans": []})
    assert status == 422


async def test_signed_checkin_list_verifies_and_rejects_tampering_and_deltas(api, db):
    door = await new_door(api, db)
    buyer = await api.register("Grace")
    t1, t2 = await buy_free(api, door, buyer, quantity=2)
    status, key = await api.get(f"/api/events/{door.event_id}/ticket-key")
    assert status == 200
    public = unb64u(key["public_key"])
    status, signed = await api.get(f"/api/events/{door.event_id}/checkin-list", user=door.organizer)
    assert status == 200, signed
    assert signed["kid"] == key["kid"] and signed["alg"] == "Ed25519"
    doc = verify_list(public, signed)
    assert doc is not None and doc["full"] is True and doc["event_id"] == door.event_id
    by_id = {t["id"]: t for t in doc["tickets"]}
    assert set(by_id) == {t1["id"], t2["id"]} and by_id[t1["id"]]["holder_name"] == "Grace"
    assert check_offline(public, by_id, t1["code"], __import__("uuid").UUID(door.event_id)) == "ok"
    # tampering: a changed payload, a changed signature, another event's key
    payload = orjson.loads(signed["payload"])
    payload["tickets"].append({**payload["tickets"][0], "id": "00000000-0000-0000-0000-000000000000"})
    assert verify_list(public, {**signed, "payload": orjson.dumps(payload).decode()}) is None
    sig = bytearray(unb64u(signed["signature"]))
    sig[0] ^= 1
    assert verify_list(public, {**signed, "signature": b64u(bytes(sig))}) is None
    other = await new_door(api, db, organizer=door.organizer)
    status, other_key = await api.get(f"/api/events/{other.event_id}/ticket-key")
    assert verify_list(unb64u(other_key["public_key"]), signed) is None
    # delta: nothing changed -> nothing new (an entry may be sent twice when other transactions
    # of the cluster were in flight: harmless); then a scan, a transfer and a cancellation show up
    version = doc["version"]
    status, signed = await api.get(f"/api/events/{door.event_id}/checkin-list", user=door.organizer,
                                   params={"since": str(version)})
    delta = verify_list(public, signed)
    assert delta["full"] is False and all(t in doc["tickets"] for t in delta["tickets"])
    status, body = await api.post(f"/api/events/{door.event_id}/checkins", user=door.organizer,
                                  json={"code": t1["code"], "gate": "A", "nonce": nonce(),
                                        "scanned_at": datetime.now(UTC).isoformat()})
    assert body["result"] == "ok"
    friend = await api.register("Friend")
    status, _ = await api.post(f"/api/tickets/{t2['id']}/transfer", user=buyer, json={"to_user_id": friend.id})
    assert status == 200
    (t3,) = await buy_free(api, door, buyer)
    status, _ = await api.post(f"/api/orders/{t3['order_id']}/cancel", user=door.organizer, json={})
    assert status == 200
    status, signed = await api.get(f"/api/events/{door.event_id}/checkin-list", user=door.organizer,
                                   params={"since": str(version)})
    delta = verify_list(public, signed)
    changed = {t["id"]: t for t in delta["tickets"]}
    assert set(changed) == {t1["id"], t2["id"], t3["id"]}  # every ticket changed
    assert changed[t1["id"]]["inside"] is True
    assert changed[t2["id"]]["generation"] == 2 and changed[t2["id"]]["holder_name"] == "Friend"
    assert changed[t3["id"]]["status"] == "void" and delta["revoked"] == [t3["id"]]
    merged = {**by_id, **changed}
    eid = __import__("uuid").UUID(door.event_id)
    assert check_offline(public, merged, t2["code"], eid) == "revoked"  # the pre-transfer code
    assert check_offline(public, merged, t3["code"], eid) == "revoked"
    assert check_offline(public, merged, t1["code"], eid) == "already_checked_in"
    assert delta["version"] >= version
    status, signed = await api.get(f"/api/events/{door.event_id}/checkin-list", user=door.organizer,
                                   params={"since": str(delta["version"])})
    assert all(t in delta["tickets"] for t in verify_list(public, signed)["tickets"])
    status, body = await api.get(f"/api/events/{door.event_id}/checkin-list", user=buyer)
    assert status == 403
