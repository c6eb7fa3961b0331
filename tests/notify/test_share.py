"""Share pages (metadata for crawlers, CSP), visit recording, referral codes, attribution and the
analytics feed (visits, registrations, revenue per source), and the order confirmation email."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlparse

from tests.notify.support import append_outbox, deliver, make_event, parts

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130 Safari/537.36"


class Meta(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.scripts: list[tuple[dict, str]] = []
        self.styles: list[str] = []
        self._in: tuple[str, dict] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta":
            self.meta[a.get("property") or a.get("name") or ""] = a.get("content", "")
        elif tag == "link":
            self.links[a.get("rel", "")] = a.get("href", "")
        elif tag in ("script", "style"):
            self._in = (tag, a)

    def handle_data(self, data):
        if self._in:
            tag, a = self._in
            (self.scripts.append((a, data)) if tag == "script" else self.styles.append(data))

    def handle_endtag(self, tag):
        self._in = None


def parse(html: str) -> Meta:
    p = Meta()
    p.feed(html)
    return p


async def test_share_page_metadata_for_crawlers(napi, ndb):
    organizer = await napi.register()
    event = await make_event(ndb, organizer.id, title='Py "Conf" <2030>', cover="https://img.example/c.png")
    status, html = await napi.get(f"/e/{event['slug']}", headers={"User-Agent": "facebookexternalhit/1.1"})
    assert status == 200 and napi.last_response.content_type == "text/html"
    page = parse(html)
    assert page.meta["og:title"] == 'Py "Conf" <2030>' and page.meta["twitter:title"] == 'Py "Conf" <2030>'
    assert '<2030>' not in html.split("<body>")[1]  # escaped in the body, not markup
    assert page.meta["og:image"] == "https://img.example/c.png"
    assert page.meta["twitter:card"] == "summary_large_image"
    assert page.meta["og:url"] == f"https://foyer.test/e/{event['slug']}" == page.links["canonical"]
    assert page.meta["event:start_time"] == event["starts_at"].isoformat()
    assert "(Europe/Berlin)" in page.meta["og:description"] and "Congress Hall" in page.meta["og:description"]
    assert page.meta["description"] == "Talks & <b>workshops</b>"  # the parser unescaped it...
    assert 'content="Talks &amp; &lt;b&gt;workshops&lt;/b&gt;"' in html  # ...because it was escaped
    (ld_attrs, ld), = page.scripts
    assert ld_attrs["type"] == "application/ld+json"
    data = json.loads(ld)
    assert data["@type"] == "Event" and data["startDate"] == event["starts_at"].isoformat()
    assert data["eventStatus"] == "https://schema.org/EventScheduled"
    # The CSP allows exactly the inline style that is on the page, and no scripts.
    csp = napi.last_response.headers["Content-Security-Policy"]
    digest = base64.b64encode(hashlib.sha256(page.styles[0].encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp and "script-src" not in csp
    assert napi.last_response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in napi.last_response.headers  # crawlers are not visitors

    draft = await make_event(ndb, organizer.id, status="draft")
    for slug in (draft["slug"], "no-such-event"):
        status, body = await napi.get(f"/e/{slug}")
        assert status == 404 and "Event not found" in body
    cancelled = await make_event(ndb, organizer.id, status="cancelled")
    status, html = await napi.get(f"/e/{cancelled['slug']}")
    assert status == 200 and "This event has been cancelled." in html
    assert json.loads(parse(html).scripts[0][1])["eventStatus"] == "https://schema.org/EventCancelled"


async def test_visits_are_deduped_per_visitor_and_bounded(app_factory, notify_settings, http, fcm, smtp):
    from handlers.api import CORE
    from tests.support.api import Api

    server = await app_factory(notify_settings(share_visits_per_ip_per_minute=4))
    napi, db = Api(str(server.make_url("/")), http), server.app[CORE].db
    organizer, fan = await napi.register(), await napi.register("Fan")
    event = await make_event(db, organizer.id)
    status, links = await napi.get(f"/api/events/{event['id']}/share-links", user=fan)
    code = links["code"]
    assert status == 200 and re.fullmatch(r"[a-z0-9]{8}", code)
    assert (await napi.get(f"/api/events/{event['id']}/share-links", user=fan))[1]["code"] == code
    x = urlparse(parse_qs(urlparse(links["links"]["x"]).query)["url"][0])
    assert x.path == f"/e/{event['slug']}" and parse_qs(x.query) == {"ref": [code], "ch": ["x"]}
    assert (await napi.get(f"/api/events/{event['id']}/share-links"))[1]["code"] is None  # anonymous

    path = f"/e/{event['slug']}?ref={code}&ch=x&utm_source=foo&fbclid=abc"
    await napi.get(path, headers={"User-Agent": BROWSER})
    cookie = napi.last_response.cookies["foyer_vid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    headers = {"User-Agent": BROWSER, "Cookie": f"foyer_vid={cookie.value}"}
    await napi.get(path, headers=headers)  # same visitor, same day: not a new visit
    await napi.get(f"/e/{event['slug']}", headers=headers)  # a direct visit is its own source
    await napi.get(path, headers={"User-Agent": "Twitterbot/1.0"})  # crawler: not counted
    await napi.get(path, headers={"User-Agent": BROWSER + " other"})  # another visitor
    await napi.get(f"/e/{event['slug']}?ref=zzzzzzzz", headers={"User-Agent": BROWSER + " x"})  # budget spent
    facts = await db.fetch("SELECT data FROM outbox WHERE type = 'referral.visited' ORDER BY seq")
    assert [(f["data"]["code"], f["data"]["channel"]) for f in facts] == [(code, "x"), ("", ""), (code, "x")]
    assert await db.fetchval("SELECT count(*) FROM referral_visits") == 3


async def test_campaigns_attribution_conversions_and_order_email(node, napi, ndb, smtp):
    organizer = await napi.register_2fa("Org")
    event = await make_event(ndb, organizer.id, title="Drop Conf")
    status, campaign = await napi.post(f"/api/events/{event['id']}/referral-codes", user=organizer,
                                       json={"campaign": "Newsletter May"})
    assert status == 201 and campaign["url"].endswith(f"?ref={campaign['code']}")
    status, again = await napi.post(f"/api/events/{event['id']}/referral-codes", user=organizer,
                                    json={"campaign": "Newsletter May"})
    assert status == 200 and again["code"] == campaign["code"]
    stranger = await napi.register()
    assert (await napi.post(f"/api/events/{event['id']}/referral-codes", user=stranger,
                            json={"campaign": "x"}))[1]["error"]["code"] == "forbidden"
    assert (await napi.get(f"/api/events/{event['id']}/referral-codes", user=stranger))[0] == 403

    # A buyer arrives with the campaign code and gets two free tickets.
    buyer = await napi.register("Buyer <3")
    assert (await napi.post(f"/api/events/{event['id']}/referral", user=buyer,
                            json={"code": "nosuchcode"}))[0] == 404
    assert (await napi.post(f"/api/events/{event['id']}/referral", user=buyer,
                            json={"code": campaign["code"], "channel": "email"}))[0] == 204
    status, ttype = await napi.post(f"/api/events/{event['id']}/ticket-types", user=organizer, json={
        "name": "Community", "kind": "free", "price_cents": 0, "currency": "EUR", "capacity": 5})
    assert status == 201, ttype
    status, order = await napi.post(f"/api/events/{event['id']}/orders", user=buyer,
                                    json={"items": [{"ticket_type_id": ttype["id"], "quantity": 2}]},
                                    headers={"Idempotency-Key": uuid.uuid4().hex})
    assert status == 201 and order["status"] == "confirmed", order
    for _ in range(2):  # at-least-once: a redelivery changes nothing
        await deliver(node.app, "notify.referrals")
        await deliver(node.app, "notify.email")
    facts = await ndb.fetch("SELECT data FROM outbox WHERE type = 'referral.converted'")
    assert [f["data"] | {} for f in facts] == [{
        "order_id": order["id"], "event_id": str(event["id"]), "code": campaign["code"], "channel": "email",
        "campaign": "Newsletter May", "referrer_id": None, "amount_cents": 0, "currency": "EUR"}]
    status, codes = await napi.get(f"/api/events/{event['id']}/referral-codes", user=organizer)
    assert status == 200 and codes["codes"][0]["registrations"] == 1 and codes["codes"][0]["visits"] == 0
    # A refund of a converted order is reported once.
    await append_outbox(ndb, "order.refunded", {"order_id": order["id"], "amount_cents": 0, "refunded_cents": 0},
                        event_id=event["id"])
    await deliver(node.app, "notify.referrals")
    await deliver(node.app, "notify.referrals")
    assert await ndb.fetchval("SELECT count(*) FROM outbox WHERE type = 'referral.refunded'") == 1

    # The order confirmation: both parts, a QR image per ticket, the event as .ics; sent once.
    (msg,) = await smtp.wait_for(1)
    assert msg["Subject"] == "Your tickets for Drop Conf" and buyer.email in str(msg["To"])
    body = parts(msg)
    codes_in_db = [r["code"] for r in await ndb.fetch("SELECT code FROM tickets WHERE order_id = $1::uuid",
                                                      order["id"])]
    assert len(codes_in_db) == 2 and all(c in body["text"] for c in codes_in_db)
    assert "Buyer &lt;3" in body["html"] and "2 × Community" in body["text"]
    assert len(body["images"]) == 2 and all(p.get_content_type() == "image/png" for p in body["images"])
    cids = {p["Content-ID"].strip("<>") for p in body["images"]}
    assert all(f"cid:{c}" in body["html"] for c in cids)
    assert all(p.get_content().startswith(b"\x89PNG") for p in body["images"])
    (ics,) = body["attachments"]
    assert ics.get_content_type() == "text/calendar" and ics.get_filename().endswith(".ics")
    from icalendar import Calendar

    cal = Calendar.from_ical(ics.get_content())
    (vevent,) = cal.walk("VEVENT")
    assert str(vevent["uid"]) == f"event-{event['id']}@foyer" and str(vevent["summary"]) == "Drop Conf"
    raw = await ndb.fetchval("SELECT string_agg(data::text, ' ') FROM outbox")
    assert not any(c in raw for c in codes_in_db)  # ticket codes never travel through the outbox
