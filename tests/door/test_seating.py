"""Reserved seating over HTTP: seat maps, picking seats, best available, returns, late payments."""

from __future__ import annotations

import asyncio
import random

import pytest

from domain.seating import best_available
from tests.door.support import new_door, nonce, now_iso
from tests.tickets.support import Sale, confirm, create_event, create_type, key, order, start_shop, wait_for

LAYOUT = {"name": "Hall", "sections": [
    {"name": "Front", "rank": 0, "rows": [{"label": "A", "seats": 6}, {"label": "B", "seats": 6}]},
    {"name": "Balcony", "rank": 1, "rows": [{"label": "C", "seat_labels": ["c1", "c2", "c3", "c4"], "blocked": ["c4"]}]},
]}


async def _map(api, sale, type_id, layout=LAYOUT, user=None):
    status, body = await api.put(f"/api/events/{sale.event_id}/ticket-types/{type_id}/seat-map",
                                 user=user or sale.organizer, json=layout)
    return status, body


def _seats(seat_map):
    return {f"{row['label']}{s['label']}" if not s["label"].startswith("c") else s["label"]: s
            for sec in seat_map["sections"] for row in sec["rows"] for s in row["seats"]}


async def _get_map(api, sale, type_id):
    status, body = await api.get(f"/api/events/{sale.event_id}/ticket-types/{type_id}/seat-map")
    assert status == 200, body
    return body


async def test_seat_map_pick_and_statuses(api, db):
    door = await new_door(api, db)
    sale = door.sale
    t = await create_type(api, sale, name="Seated", capacity=1, max_per_order=6)
    stranger = await api.register()
    status, body = await _map(api, sale, t["id"], user=stranger)
    assert status == 403
    status, body = await _map(api, sale, t["id"], layout={"sections": [{"name": "X", "rows": [{"label": "A"}]}]})
    assert status == 422 and body["error"]["details"][0]["field"] == "sections.0.rows.0"
    status, seat_map = await _map(api, sale, t["id"])
    assert status == 200, seat_map
    assert seat_map["counts"] == {"available": 15, "held": 0, "sold": 0, "blocked": 1}
    types = {x["id"]: x for x in (await api.get(f"/api/events/{sale.event_id}/ticket-types"))[1]}
    assert types[t["id"]]["capacity"] == 15
    seats = _seats(seat_map)
    buyer, other = await api.register(), await api.register()
    status, placed = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2,
                                                      "seat_ids": [seats["A3"]["id"], seats["A4"]["id"]]}], key=key())
    assert status == 201, placed
    assert [s["label"] for s in placed["items"][0]["seats"]] == ["3", "4"]
    assert placed["items"][0]["seats"][0]["section"] == "Front" and placed["items"][0]["seats"][0]["row"] == "A"
    status, mine = await api.get(f"/api/orders/{placed['id']}/seats", user=buyer)
    assert status == 200 and [s["id"] for s in mine] == [seats["A3"]["id"], seats["A4"]["id"]]
    status, _ = await api.get(f"/api/orders/{placed['id']}/seats", user=other)
    assert status == 404
    after = _seats(await _get_map(api, sale, t["id"]))
    assert after["A3"]["status"] == "held" and after["A5"]["status"] == "available" and after["c4"]["status"] == "blocked"
    # refusals: taken seat, blocked seat, wrong count, duplicate, unknown seat, seats on an unseated type
    cases = [
        ([{"ticket_type_id": t["id"], "quantity": 2, "seat_ids": [seats["A4"]["id"], seats["A5"]["id"]]}],
         409, "seat_unavailable"),
        ([{"ticket_type_id": t["id"], "quantity": 1, "seat_ids": [seats["c4"]["id"]]}], 409, "seat_unavailable"),
        ([{"ticket_type_id": t["id"], "quantity": 2, "seat_ids": [seats["A5"]["id"]]}], 422, "validation_failed"),
        ([{"ticket_type_id": t["id"], "quantity": 2, "seat_ids": [seats["A5"]["id"]] * 2}], 422, "validation_failed"),
        ([{"ticket_type_id": t["id"], "quantity": 1, "seat_ids": [door.free_type["id"]]}], 422, "validation_failed"),
        ([{"ticket_type_id": door.free_type["id"], "quantity": 1, "seat_ids": [seats["A5"]["id"]]}], 422,
         "validation_failed"),
    ]
    for items, code, error in cases:
        status, body = await order(api, sale, other, items, key=key())
        assert (status, body["error"]["code"]) == (code, error), (items, body)
    status, body = await order(api, sale, other, cases[0][0], key=key())
    assert body["error"]["details"]["seat_ids"] == [seats["A4"]["id"]]
    # nothing leaked into the counters
    row = await db.fetchrow("SELECT held, sold FROM ticket_types WHERE id = $1::uuid", t["id"])
    assert (row["held"], row["sold"]) == (2, 0)
    # the map cannot be replaced once seats are held; cancelling returns the seats
    status, body = await _map(api, sale, t["id"])
    assert status == 409
    status, _ = await api.post(f"/api/orders/{placed['id']}/cancel", user=buyer, json={})
    assert status == 200
    assert _seats(await _get_map(api, sale, t["id"]))["A3"]["status"] == "available"
    status, again = await order(api, sale, other, [{"ticket_type_id": t["id"], "quantity": 1,
                                                     "seat_ids": [seats["A3"]["id"]]}], key=key())
    assert status == 201
    # expiry returns seats too (lazily, on read)
    await db.execute("UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1::uuid", again["id"])
    assert (await api.get(f"/api/orders/{again['id']}", user=other))[1]["status"] == "expired"
    assert _seats(await _get_map(api, sale, t["id"]))["A3"]["status"] == "available"
    assert await db.fetchval("SELECT count(*) FROM seat_assignments WHERE released_at IS NULL") == 0
    # blocking free seats lowers the capacity
    status, body = await api.post(f"/api/events/{sale.event_id}/ticket-types/{t['id']}/seat-map/block",
                                  user=sale.organizer, json={"seat_ids": [seats["B1"]["id"]], "blocked": True})
    assert status == 200 and body == {"changed": 1, "capacity": 14}


def test_best_available_prefers_adjacent_front_center():
    def seat(section, rank, row, pos, free=True):
        return {"id": f"{section}{row}{pos}", "section_id": section, "rank": rank, "section_position": rank,
                "row_no": row, "seat_no": pos, "free": free}

    front = [seat("F", 0, r, p, free=not (r == 0 and p in (2, 3))) for r in range(2) for p in range(6)]
    back = [seat("K", 1, 0, p) for p in range(10)]
    layout = front + back
    pick = lambda n, taken=set(): [s["id"] for s in best_available(layout, n, taken)]  # noqa: E731
    assert pick(2) == ["F00", "F01"]  # row 0 has two free pairs, equally central: the first
    assert pick(3) == ["F11", "F12", "F13"]  # row 0 has no 3 adjacent: row 1, centred
    assert pick(6) == [f"F1{p}" for p in range(6)]
    assert pick(7) == [f"K0{p}" for p in range(1, 8)]  # only the back section has 7 together
    assert pick(3, {"F11", "F12"}) == ["F13", "F14", "F15"]
    taken = {s["id"] for s in back}
    assert sorted(pick(7, taken)) == sorted(["F00", "F01", "F04", "F05"] + ["F12", "F13", "F11"])  # split, best
    assert best_available(layout, 100, set()) is None


async def test_best_available_over_http_and_free_seated_checkin(api, db):
    door = await new_door(api, db)
    sale = door.sale
    t = await create_type(api, sale, name="Seated free", kind="free", price_cents=0, capacity=1, max_per_order=6)
    status, seat_map = await _map(api, sale, t["id"])
    assert status == 200
    seats = _seats(seat_map)
    buyer = await api.register("Seated")
    status, placed = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2,
                                                      "seat_ids": [seats["A3"]["id"], seats["A4"]["id"]]}], key=key())
    assert status == 201 and placed["status"] == "confirmed"
    status, placed = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 3}], key=key())
    assert status == 201, placed
    assert [s["row"] + s["label"] for s in placed["items"][0]["seats"]] == ["B2", "B3", "B4"]
    status, placed2 = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 2}], key=key())
    assert [s["row"] + s["label"] for s in placed2["items"][0]["seats"]] == ["A1", "A2"]
    # the seat shows in the check-in answer
    _, tickets = await api.get("/api/me/tickets", user=buyer)
    mine = [x for x in tickets if x["order_id"] == placed["id"]]
    status, body = await api.post(f"/api/events/{sale.event_id}/checkins", user=sale.organizer,
                                  json={"code": mine[0]["code"], "gate": "A", "nonce": nonce(), "scanned_at": now_iso()})
    assert body["result"] == "ok" and body["ticket"]["seat"]["section"] == "Front"
    assert body["ticket"]["seat"]["row"] + body["ticket"]["seat"]["label"] in ("B2", "B3", "B4")
    # an organizer cancels (refunds) the free order: its seats are free again
    status, _ = await api.post(f"/api/orders/{placed2['id']}/cancel", user=sale.organizer, json={})
    assert status == 200
    after = _seats(await _get_map(api, sale, t["id"]))
    assert after["A1"]["status"] == after["A2"]["status"] == "available" and after["B3"]["status"] == "sold"
    # sell out by best available: 15 seats - 5 sold = 10 left; asking for 11 more in total fails
    got = 0
    while True:
        status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 4}], key=key())
        if status != 201:
            break
        got += 4
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 10 - got}], key=key())
    assert status == 201, body
    status, body = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1}], key=key())
    assert status == 409 and body["error"]["code"] == "sold_out"
    assert (await _get_map(api, sale, t["id"]))["counts"] == {"available": 0, "held": 0, "sold": 15, "blocked": 1}


async def test_seats_never_sold_twice_under_concurrency(api, db):
    door = await new_door(api, db)
    sale = door.sale
    t = await create_type(api, sale, name="Seated", capacity=1, max_per_order=4)
    layout = {"sections": [{"name": "S", "rows": [{"label": r, "seats": 6} for r in "ABC"]}]}
    status, seat_map = await _map(api, sale, t["id"], layout=layout)
    ids = [s["id"] for sec in seat_map["sections"] for row in sec["rows"] for s in row["seats"]]
    buyers = await asyncio.gather(*(api.register() for _ in range(6)))
    rng = random.Random(3)

    async def attempt(i):
        items = [{"ticket_type_id": t["id"], "quantity": 2}]
        if i % 3:
            items[0]["seat_ids"] = rng.sample(ids, 2)
        return await order(api, sale, buyers[i % 6], items, key=key())

    results = await asyncio.gather(*(attempt(i) for i in range(40)))
    assert {s for s, _ in results} <= {201, 409}, [b for s, b in results if s not in (201, 409)]
    sold = [s["id"] for st, b in results if st == 201 for s in b["items"][0]["seats"]]
    assert len(sold) == len(set(sold)) and len(sold) <= 18
    while True:  # the gate is consistent again once the race settled: the rest sells, exactly
        status, body = await order(api, sale, buyers[0], [{"ticket_type_id": t["id"], "quantity": 1}], key=key())
        if status != 201:
            assert body["error"]["code"] == "sold_out", body
            break
        sold.append(body["items"][0]["seats"][0]["id"])
    assert sorted(sold) == sorted(ids)
    active = await db.fetch("SELECT seat_id, order_id FROM seat_assignments WHERE released_at IS NULL")
    assert sorted(str(r["seat_id"]) for r in active) == sorted(sold)
    row = await db.fetchrow("SELECT held, sold, capacity FROM ticket_types WHERE id = $1::uuid", t["id"])
    assert row["held"] == len(sold) and row["capacity"] == 18


@pytest.fixture
async def shop(aiohttp_server, app_factory, settings_factory, http):
    return await start_shop(aiohttp_server, app_factory, settings_factory, http)


async def test_late_payment_gets_its_seats_back_or_is_refunded(shop, http):
    api = shop.api
    organizer = await api.register("Org")
    sale = Sale(await create_event(shop.db, organizer), organizer)
    t = await create_type(api, sale, name="Seated", capacity=1, max_per_order=4)
    status, seat_map = await _map(api, sale, t["id"])
    seats = _seats(seat_map)
    first, second, third = await api.register(), await api.register(), await api.register()
    expire = "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1::uuid"

    async def hold_and_expire(buyer, seat):
        _, placed = await order(api, sale, buyer, [{"ticket_type_id": t["id"], "quantity": 1,
                                                     "seat_ids": [seats[seat]["id"]]}], key=key())
        _, payment = await api.post(f"/api/orders/{placed['id']}/payments", user=buyer)
        await shop.db.execute(expire, placed["id"])
        assert (await api.get(f"/api/orders/{placed['id']}", user=buyer))[1]["status"] == "expired"
        return placed, payment

    async def status_is(buyer, order_id, want):
        return (await api.get(f"/api/orders/{order_id}", user=buyer))[1]["status"] == want

    placed, payment = await hold_and_expire(first, "A1")
    assert (await confirm(http, payment))[0] == 200  # A1 is still free: paid, seat back
    assert await wait_for(lambda: status_is(first, placed["id"], "paid"))
    assert _seats(await _get_map(api, sale, t["id"]))["A1"]["status"] == "sold"
    placed2, payment2 = await hold_and_expire(second, "A2")
    status, _ = await order(api, sale, third, [{"ticket_type_id": t["id"], "quantity": 1,
                                                 "seat_ids": [seats["A2"]["id"]]}], key=key())
    assert status == 201  # someone else took A2
    assert (await confirm(http, payment2))[0] == 200
    assert await wait_for(lambda: status_is(second, placed2["id"], "refunded"))
    active = await shop.db.fetch("SELECT order_id FROM seat_assignments WHERE seat_id = $1::uuid AND released_at IS NULL",
                                 seats["A2"]["id"])
    assert len(active) == 1 and str(active[0]["order_id"]) != placed2["id"]
    row = await shop.db.fetchrow("SELECT held, sold FROM ticket_types WHERE id = $1::uuid", t["id"])
    assert (row["held"], row["sold"]) == (1, 1)
