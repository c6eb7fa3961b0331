"""Public share pages, per-network share links with referral codes, and referral attribution.

- `/e/{slug}` renders server-side (no JavaScript) with Open Graph, Twitter card and schema.org
  Event metadata, so crawlers and link unfurlers see title, description, image and dates.
- Visits are recorded at most once per visitor, day, event and referral code (`''` = direct),
  only for non-bot user agents and within a per-IP budget per minute; each new visit appends
  `referral.visited` `{event_id, code, channel, day}` to the outbox (the analytics feed).
  The visitor id is a first-party cookie; a first visit without it uses an HMAC of IP and
  user agent (never stored raw), which the cookie then carries on.
- A signed-in user who arrived with a code calls `POST /api/events/{id}/referral`; when their order
  is confirmed (`ticket.issued`) within `referral_window_days`, the consumer `notify.referrals`
  records one conversion per order and appends `referral.converted` `{order_id, event_id, code,
  channel, campaign, referrer_id, amount_cents, currency}`; a refund of a converted order appends
  `referral.refunded` `{order_id, event_id, code, channel, refunded_cents, currency}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from markupsafe import Markup

from domain.consumers import Consumer
from domain.errors import FoyerError, not_found
from domain.identity import Principal
from domain.notify.calendar import Calendars
from domain.notify.content import snippet, uuid_of, venue_text, when
from domain.policy import Action, authorize
from domain.services import Core
from integrations.email.compose import environment
from storage import notify as notify_store
from storage import outbox
from storage import referrals as store
from storage.outbox import OutboxEvent

NETWORKS = ("x", "facebook", "linkedin", "whatsapp", "telegram", "email", "copy")
_CODE = re.compile(r"^[a-z0-9]{4,32}$")
_BOTS = re.compile(r"bot|crawl|spider|slurp|facebookexternalhit|embedly|preview|whatsapp|telegram|discord|"
                   r"slack|linkedin|pinterest|curl|wget|python-requests|headless", re.I)
VISITOR_COOKIE = "foyer_vid"
_VID = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")

CSS = (
    "body{margin:0;font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;color:#1f2330;"
    "background:#f4f4f7}main{max-width:720px;margin:0 auto;padding:32px 20px}"
    "img.cover{width:100%;border-radius:12px;margin-bottom:16px}h1{font-size:32px;margin:0 0 8px}"
    ".meta{color:#4a5060;margin:4px 0}.banner{background:#ffe3e3;color:#a61e1e;padding:12px;border-radius:8px}"
    ".desc{white-space:pre-line;line-height:1.5}.cta{display:inline-block;background:#3b5bdb;color:#fff;"
    "padding:12px 20px;border-radius:8px;text-decoration:none;margin:16px 0}"
    "ul.share{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:8px}"
    "ul.share a{display:inline-block;padding:8px 12px;border:1px solid #d0d3dc;border-radius:6px;"
    "color:#1f2330;text-decoration:none}footer{margin-top:32px;color:#8a8f9c;font-size:13px}"
)
CSP = ("default-src 'none'; img-src https: data:; "
       f"style-src 'sha256-{base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()}'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def is_bot(user_agent: str) -> bool:
    return not user_agent or bool(_BOTS.search(user_agent))


class Sharing:
    def __init__(self, core: Core, calendars: Calendars) -> None:
        self.core = core
        self.calendars = calendars
        self.env = environment()
        self._key = hashlib.sha256(b"foyer-visitor:" + str(core.settings.auth.jwt_secret).encode()).digest()

    @property
    def base_url(self) -> str:
        return self.core.settings.base_url.rstrip("/")

    def page_url(self, slug: str, code: str | None = None, channel: str | None = None) -> str:
        url = f"{self.base_url}/e/{quote(slug)}"
        params = {k: v for k, v in (("ref", code), ("ch", channel)) if v}
        return f"{url}?{urlencode(params)}" if params else url

    def share_links(self, *, title: str, slug: str, code: str | None) -> dict[str, str]:
        def u(channel: str) -> str:
            return self.page_url(slug, code, channel)

        text = f"{title}"
        return {
            "x": "https://twitter.com/intent/tweet?" + urlencode({"text": text, "url": u("x")}),
            "facebook": "https://www.facebook.com/sharer/sharer.php?" + urlencode({"u": u("facebook")}),
            "linkedin": "https://www.linkedin.com/sharing/share-offsite/?" + urlencode({"url": u("linkedin")}),
            "whatsapp": "https://wa.me/?" + urlencode({"text": f"{text} {u('whatsapp')}"}),
            "telegram": "https://t.me/share/url?" + urlencode({"url": u("telegram"), "text": text}),
            "email": "mailto:?" + urlencode({"subject": text, "body": u("email")}, quote_via=quote),
            "copy": u("copy"),
        }

    # --- the public page --------------------------------------------------------------------

    def _visitor(self, cookie: str | None, client_ip: str, user_agent: str) -> tuple[str, bool]:
        """(visitor id, is new cookie)."""
        if cookie and _VID.match(cookie):
            return cookie, False
        digest = hmac.new(self._key, f"{client_ip}|{user_agent}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode(), True

    async def render_page(self, *, slug: str, ref: str | None, channel: str | None, client_ip: str,
                          user_agent: str, cookie: str | None) -> tuple[str, str | None]:
        """(HTML, visitor cookie to set or None). Raises not_found for unknown or non-public events."""
        pool = self.core.db.pool
        e = await store.event_by_slug(pool, slug)
        if e is None:
            raise not_found("event")
        code = ref if ref and _CODE.match(ref) else None
        if code is not None:
            row = await store.code_row(pool, code)
            code = code if row is not None and row["event_id"] == e["id"] else None
        channel = channel if channel in NETWORKS else ""
        new_cookie = None
        if not is_bot(user_agent):
            vid, fresh = self._visitor(cookie, client_ip, user_agent)
            new_cookie = vid if fresh else None
            await self._record_visit(e["id"], vid, code or "", channel, client_ip)
        return self._html(e, code), new_cookie

    async def _record_visit(self, event_id: uuid.UUID, vid: str, code: str, channel: str, client_ip: str) -> None:
        budget = self.core.settings.notify.share_visits_per_ip_per_minute
        if await notify_store.hit_counter(self.core.redis, self.core.keys("notify", "visits", client_ip),
                                          window_seconds=60) > budget:
            return
        visitor = hmac.new(self._key, vid.encode(), hashlib.sha256).digest()[:16]
        day = datetime.now(UTC).date()
        async with self.core.db.transaction("record_share_visit") as conn:
            if await store.record_visit(conn, event_id=event_id, day=day, visitor_hash=visitor, code=code,
                                        channel=channel):
                await outbox.append(conn, type="referral.visited", event_id=event_id, data={
                    "event_id": str(event_id), "code": code, "channel": channel, "day": day.isoformat()})

    def _html(self, e: Any, code: str | None) -> str:
        image = e["cover_image_url"] or self.core.settings.notify.share_default_image_url or ""
        image = image if image.startswith(("https://", "http://")) else ""
        cancelled = e["status"] == "cancelled"
        item = self.calendars.event_item(e)
        where = venue_text(e["venue"])
        jsonld = {
            "@context": "https://schema.org", "@type": "Event", "name": e["title"],
            "description": snippet(e["description"] or "", 500), "startDate": e["starts_at"].isoformat(),
            "endDate": e["ends_at"].isoformat(), "url": self.page_url(e["slug"]),
            "eventStatus": "https://schema.org/EventCancelled" if cancelled else "https://schema.org/EventScheduled",
            **({"image": [image]} if image else {}),
            **({"location": {"@type": "Place", "name": where}} if where else {}),
        }
        context = {
            "css": Markup(CSS),
            "title": e["title"], "description": snippet(e["description"] or "", 200),
            "full_description": e["description"] or "", "image": image,
            "url": self.page_url(e["slug"]), "when": when(e["starts_at"], e["ends_at"], e["timezone"]),
            "starts_at": e["starts_at"].isoformat(), "ends_at": e["ends_at"].isoformat(), "where": where,
            "cancelled": cancelled, "site_name": _site_name(self.core),
            "tickets_url": self._app_event_url(e["slug"], code),
            "share": self.share_links(title=e["title"], slug=e["slug"], code=code),
            "calendar": self.calendars.links(item, f"{self.base_url}/api/events/{e['id']}/calendar.ics"),
            # JSON inside <script>: escape "<" so no "</script>" can close the element.
            "jsonld": Markup(orjson.dumps(jsonld).decode().replace("<", "\\u003c")),
        }
        return self.env.get_template("share/event.html").render(context)

    def _app_event_url(self, slug: str, code: str | None) -> str:
        base = (self.core.settings.notify.app_url or self.core.settings.base_url).rstrip("/")
        return f"{base}/events/{quote(slug)}" + (f"?{urlencode({'ref': code})}" if code else "")

    # --- referral API -----------------------------------------------------------------------

    async def links_for(self, principal: Principal | None, event_id: uuid.UUID) -> dict[str, Any]:
        async with self.core.db.transaction("share_links") as conn:
            await authorize(conn, principal, Action.VIEW_EVENT, event_id)
            e = await notify_store.event_row(conn, event_id)
            if e is None or e["status"] == "draft":
                raise FoyerError("invalid_state", "publish the event before sharing it")
            code = await store.user_code(conn, event_id=event_id, user_id=principal.user_id) if principal else None
        return {"url": self.page_url(e["slug"], code), "code": code,
                "links": self.share_links(title=e["title"], slug=e["slug"], code=code)}

    async def create_campaign(self, principal: Principal, event_id: uuid.UUID, campaign: str) -> tuple[dict, bool]:
        async with self.core.db.transaction("create_referral_campaign") as conn:
            await authorize(conn, principal, Action.UPDATE_EVENT, event_id)
            e = await notify_store.event_row(conn, event_id)
            code, created = await store.campaign_code(conn, event_id=event_id, campaign=campaign,
                                                      created_by=principal.user_id)
        return {"code": code, "campaign": campaign, "url": self.page_url(e["slug"], code),
                "links": self.share_links(title=e["title"], slug=e["slug"], code=code)}, created

    async def list_codes(self, principal: Principal, event_id: uuid.UUID) -> list[dict[str, Any]]:
        async with self.core.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_ANALYTICS, event_id,
                            require_2fa=self.core.settings.auth.require_2fa_for_staff)
            rows = await store.codes_with_stats(conn, event_id)
        return [{"code": r["code"], "campaign": r["campaign"], "user": ({"id": r["user_id"], "name": r["user_name"]}
                                                                         if r["user_id"] else None),
                 "visits": r["visits"], "registrations": r["registrations"], "revenue": r["revenue"],
                 "created_at": r["created_at"]} for r in rows]

    async def attribute(self, principal: Principal, event_id: uuid.UUID, code: str, channel: str | None) -> None:
        async with self.core.db.transaction("referral_attribution") as conn:
            await authorize(conn, principal, Action.VIEW_EVENT, event_id)
            row = await store.code_row(conn, code) if _CODE.match(code) else None
            if row is None or row["event_id"] != event_id:
                raise not_found("referral code")
            if row["user_id"] == principal.user_id:
                return  # referring yourself earns nothing
            await store.attribute(conn, event_id=event_id, user_id=principal.user_id, code=code,
                                  channel=channel if channel in NETWORKS else "")

    # --- outbox consumer --------------------------------------------------------------------

    def consumer(self) -> Consumer:
        return Consumer(name="notify.referrals", handle=self.on_outbox,
                        types=frozenset({"ticket.issued", "order.refunded"}))

    async def on_outbox(self, event: OutboxEvent) -> None:
        order_id = uuid_of(event.data, "order_id")
        if order_id is None:
            return
        if event.type == "ticket.issued":
            await self._convert(order_id)
        elif event.type == "order.refunded":
            await self._refunded(order_id, event)

    async def _convert(self, order_id: uuid.UUID) -> None:
        pool = self.core.db.pool
        order = await store.order_amount(pool, order_id)
        if order is None:
            return
        hit = await store.attribution(pool, event_id=order["event_id"], user_id=order["user_id"],
                                      window_days=self.core.settings.notify.referral_window_days)
        if hit is None:
            return
        async with self.core.db.transaction("referral_conversion") as conn:
            if await store.record_conversion(conn, order_id=order_id, event_id=order["event_id"],
                                             user_id=order["user_id"], code=hit["code"], channel=hit["channel"],
                                             amount_cents=order["total_cents"], currency=order["currency"]):
                await outbox.append(conn, type="referral.converted", event_id=order["event_id"], data={
                    "order_id": str(order_id), "event_id": str(order["event_id"]), "code": hit["code"],
                    "channel": hit["channel"], "campaign": hit["campaign"],
                    "referrer_id": str(hit["referrer_id"]) if hit["referrer_id"] else None,
                    "amount_cents": order["total_cents"], "currency": order["currency"]})

    async def _refunded(self, order_id: uuid.UUID, event: OutboxEvent) -> None:
        conv = await store.conversion(self.core.db.pool, order_id)
        if conv is None:
            return
        refunded = int(event.data.get("amount_cents") or 0)  # this refund (refunded_cents is the running total)
        async with self.core.db.transaction("referral_refund") as conn:
            if not await store.record_refund(conn, source_event_id=event.id, order_id=order_id,
                                             refunded_cents=refunded):
                return  # this refund fact was already handled
            await outbox.append(conn, type="referral.refunded", event_id=conv["event_id"],
                                data={"order_id": str(order_id), "event_id": str(conv["event_id"]),
                                      "code": conv["code"], "channel": conv["channel"],
                                      "refunded_cents": refunded,
                                      "currency": conv["currency"], "source_event_id": str(event.id)})


def _site_name(core: Core) -> str:
    from domain.notify.account_email import site_name

    return site_name(core.settings.notify.email_from)
