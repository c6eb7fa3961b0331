"""Organizer views over HTTP: orders (filters, cursors), attendees, sales, revenue, CSV exports,
and who may see them (2FA, roles, other organizers' events)."""

from __future__ import annotations

import csv
import io
import uuid

import pytest

from domain.reports import csv_safe
from tests.door.support import add_member, new_door, nonce, now_iso
from tests.support.api import Api
from tests.tickets.support import Sale, confirm, create_event, create_type, key, order, start_shop, wait_for


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_orders_attendees_sales_exports_and_roles(api, db):
    door = await new_door(api, db)
    sale, org = door.sale, door.organizer
    paid_type = await create_type(api, sale, name="Standard", capacity=20, max_per_order=5)
    seated = await create_type(api, sale, name="Seated", kind="free", price_cents=0, capacity=1)
    status, _ = await api.put(f"/api/events/{sale.event_id}/ticket-types/{seated['id']}/seat-map", user=org,
                              json={"sections": [{"name": "Stalls", "rows": [{"label": "A", "seats": 4}]}]})
    assert status == 200
    status, question = await api.post(f"/api/events/{sale.event_id}/form/questions", user=org,
                                      json={"label": "Company", "kind": "text"})
    assert status == 201
    ada = await api.register("Ada Lovelace")
    evil = await api.register("=HYPERLINK(\"http://x\")")
    placed = {}
    status, placed["ada_free"] = await order(api, sale, ada, [{"ticket_type_id": door.free_type["id"], "quantity": 2}],
                                             key=key(), answers={question["id"]: "Analytical Engines"})
    assert status == 201
    status, placed["ada_held"] = await order(api, sale, ada, [{"ticket_type_id": paid_type["id"], "quantity": 3}],
                                             key=key())
    status, placed["evil_seat"] = await order(api, sale, evil, [{"ticket_type_id": seated["id"], "quantity": 1}],
                                              key=key(), answers={question["id"]: "+cmd|' /C calc'!A0"})
    assert status == 201, placed["evil_seat"]
    status, placed["evil_cancel"] = await order(api, sale, evil, [{"ticket_type_id": paid_type["id"], "quantity": 1}],
                                                key=key())
    assert (await api.post(f"/api/orders/{placed['evil_cancel']['id']}/cancel", user=evil, json={}))[0] == 200
    _, ada_tickets = await api.get("/api/me/tickets", user=ada)
    status, scan = await api.post(f"/api/events/{sale.event_id}/checkins", user=org,
                                  json={"code": ada_tickets[0]["code"], "gate": "Main", "nonce": nonce(),
                                        "scanned_at": now_iso()})
    assert scan["result"] == "ok"

    # orders: newest first, filters, cursor pages
    base = f"/api/events/{sale.event_id}"
    status, page = await api.get(f"{base}/orders", user=org)
    assert status == 200, page
    assert [o["id"] for o in page["items"]] == [placed[k]["id"] for k in
                                                ("evil_cancel", "evil_seat", "ada_held", "ada_free")]
    assert page["next_cursor"] is None and page["items"][3]["buyer"]["email"] == ada.email
    assert page["items"][2]["items"][0]["name"] == "Standard" and page["items"][2]["items"][0]["quantity"] == 3
    for params, expected in (({"status": "held"}, ["ada_held"]), ({"status": "cancelled"}, ["evil_cancel"]),
                             ({"ticket_type_id": paid_type["id"]}, ["evil_cancel", "ada_held"]),
                             ({"email": ada.email.upper()[:8]}, ["ada_held", "ada_free"]),
                             ({"created_from": "2999-01-01T00:00:00Z"}, [])):
        status, page = await api.get(f"{base}/orders", user=org, params=params)
        assert status == 200 and [o["id"] for o in page["items"]] == [placed[k]["id"] for k in expected], params
    seen, cursor = [], None
    while True:
        status, page = await api.get(f"{base}/orders", user=org, params={"limit": "1", **({"cursor": cursor} if cursor
                                                                                           else {})})
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [placed[k]["id"] for k in ("evil_cancel", "evil_seat", "ada_held", "ada_free")]
    status, body = await api.get(f"{base}/orders", user=org, params={"cursor": "nonsense"})
    assert status == 422

    # attendees: answers, seats, check-in state
    status, page = await api.get(f"{base}/attendees", user=org)
    assert status == 200 and len(page["items"]) == 3
    by_holder = {}
    for a in page["items"]:
        by_holder.setdefault(a["holder"]["name"], []).append(a)
    assert all(a["answers"] == {question["id"]: "Analytical Engines"} for a in by_holder["Ada Lovelace"])
    assert sorted(a["checkin"]["checked_in"] for a in by_holder["Ada Lovelace"]) == [False, True]
    (evil_ticket,) = by_holder[evil.name]
    assert evil_ticket["seat"] == {"section": "Stalls", "row": "A", "label": "2"}  # best available: the middle
    status, page = await api.get(f"{base}/attendees", user=org, params={"checked_in": "true"})
    assert [a["ticket_id"] for a in page["items"]] == [ada_tickets[0]["id"]]

    # sales per type
    status, sales = await api.get(f"{base}/sales", user=org)
    by_type = {t["id"]: t for t in sales["ticket_types"]}
    assert (by_type[paid_type["id"]]["held"], by_type[paid_type["id"]]["available"]) == (3, 17)
    assert (by_type[seated["id"]]["sold"], by_type[seated["id"]]["capacity"], by_type[seated["id"]]["seated"]) == (1, 4,
                                                                                                                   True)

    # CSV exports: streamed, injection-safe
    status, text = await api.get(f"{base}/exports/orders.csv", user=org)
    assert status == 200 and api.last_response.headers["Content-Type"].startswith("text/csv")
    rows = _csv(text)
    assert rows[0][:3] == ["order_id", "status", "created_at"] and len(rows) == 5
    evil_rows = [r for r in rows if r[5] == evil.email]
    assert evil_rows and all(r[4] == "'" + evil.name for r in evil_rows)
    status, text = await api.get(f"{base}/exports/attendees.csv", user=org)
    rows = _csv(text)
    assert rows[0][-1] == "Company" and len(rows) == 4
    evil_row = next(r for r in rows if r[0] == evil_ticket["ticket_id"])
    assert evil_row[-1] == "'+cmd|' /C calc'!A0" and evil_row[3] == "'" + evil.name and evil_row[6] == "Stalls A-2"
    ada_in = next(r for r in rows if r[0] == ada_tickets[0]["id"])
    assert ada_in[8] == "Main" and ada_in[9] == "yes" and ada_in[-1] == "Analytical Engines"
    status, text = await api.get(f"{base}/exports/orders.csv", user=org, params={"status": "held"})
    assert len(_csv(text)) == 2

    # who may look
    no_2fa, staff = await api.register("Co-organizer"), await api.register("Staff")
    await add_member(api, door, no_2fa, "organizer")
    await add_member(api, door, staff, "staff")
    for path in ("orders", "attendees", "sales", "revenue", "exports/orders.csv", "exports/attendees.csv"):
        status, body = await api.get(f"{base}/{path}", user=no_2fa)
        assert status == 403 and body["error"]["code"] == "two_factor_required", (path, body)
        for who in (staff, ada):
            status, body = await api.get(f"{base}/{path}", user=who)
            assert status == 403 and body["error"]["code"] == "forbidden", (path, body)
        status, body = await api.get(f"{base}/{path}")
        assert status == 401
    other = await new_door(api, db)
    await db.execute("UPDATE events SET status = 'draft', published_at = NULL WHERE id = $1::uuid", other.event_id)
    for path in ("orders", "attendees", "exports/attendees.csv"):
        status, body = await api.get(f"/api/events/{other.event_id}/{path}", user=org)
        assert status == 404 and body["error"]["code"] == "not_found"
        status, body = await api.get(f"/api/events/{uuid.uuid4()}/{path}", user=org)
        assert status == 404


def test_csv_safe():
    assert [csv_safe(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "plain", None, 5)] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "plain", "", "5"]


@pytest.fixture
async def shop(aiohttp_server, app_factory, settings_factory, http):
    return await start_shop(aiohttp_server, app_factory, settings_factory, http, argon2_time_cost=1,
                            argon2_memory_kib=8192)


async def test_revenue_gross_refunded_net_per_currency(shop, http):
    api: Api = shop.api
    organizer = await api.register_2fa("Org")
    sale = Sale(await create_event(shop.db, organizer), organizer)
    eur = await create_type(api, sale, name="EUR", price_cents=2500, currency="EUR", capacity=10)
    usd = await create_type(api, sale, name="USD", price_cents=4000, currency="USD", capacity=10)
    buyer = await api.register()

    async def buy_and_pay(type_id, quantity):
        _, placed = await order(api, sale, buyer, [{"ticket_type_id": type_id, "quantity": quantity}], key=key())
        _, payment = await api.post(f"/api/orders/{placed['id']}/payments", user=buyer)
        assert (await confirm(http, payment))[0] == 200

        async def paid():
            return (await api.get(f"/api/orders/{placed['id']}", user=buyer))[1]["status"] == "paid"

        assert await wait_for(paid)
        return placed

    first = await buy_and_pay(eur["id"], 2)  # 5000
    await buy_and_pay(eur["id"], 1)  # 2500
    await buy_and_pay(usd["id"], 1)  # 4000
    await order(api, sale, buyer, [{"ticket_type_id": eur["id"], "quantity": 3}], key=key())  # held: not revenue
    status, body = await api.post(f"/api/orders/{first['id']}/refunds", user=organizer, json={"amount_cents": 1000})
    assert status in (200, 201), body
    status, rev = await api.get(f"/api/events/{sale.event_id}/revenue", user=organizer)
    assert status == 200, rev
    assert rev["currencies"] == [
        {"currency": "EUR", "orders": 2, "gross_cents": 7500, "refunded_cents": 1000, "net_cents": 6500},
        {"currency": "USD", "orders": 1, "gross_cents": 4000, "refunded_cents": 0, "net_cents": 4000}]
    by_type = {t["name"]: t for t in rev["ticket_types"]}
    assert (by_type["EUR"]["tickets"], by_type["EUR"]["gross_cents"]) == (3, 7500)
    assert (by_type["USD"]["tickets"], by_type["USD"]["gross_cents"]) == (1, 4000)
