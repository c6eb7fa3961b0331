"""The order-confirmation email: tickets with QR codes and the event as an .ics attachment.

Sent once per order (dedupe key `order:<id>:confirmation`) when ticketing records `ticket.issued`
for it, to the buyer. Ticket codes are read from PostgreSQL at send time; they are never copied
into outbox rows or Kafka. QR rendering (segno) and MIME assembly run off the event loop.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from email.message import EmailMessage
from typing import Any

import segno

from domain.notify.calendar import Calendars
from domain.notify.content import uuid_of, venue_text, when
from domain.notify.email import EmailService
from domain.services import Core
from integrations.calendar import build_calendar
from integrations.email.compose import Attachment, InlineImage
from storage import notify as store
from storage.notify import ClaimedEmail, EmailRow
from storage.outbox import OutboxEvent


def qr_png(code: str) -> bytes:
    buf = io.BytesIO()
    segno.make(code, error="m").save(buf, kind="png", scale=5, border=2)
    return buf.getvalue()


class OrderMail:
    def __init__(self, core: Core, email: EmailService, calendars: Calendars) -> None:
        self.core = core
        self.email = email
        self.calendars = calendars
        email.register("order", self.build_queued)

    async def handle(self, event: OutboxEvent) -> None:
        order_id = uuid_of(event.data, "order_id")
        if order_id is None:
            return
        await self.email.enqueue([EmailRow(dedupe_key=f"order:{order_id}:confirmation", kind="order_confirmation",
                                           user_id=uuid_of(event.data, "user_id"),
                                           spec={"builder": "order", "order_id": str(order_id)})])

    async def build_queued(self, item: ClaimedEmail) -> EmailMessage | None:
        return await self.build(uuid.UUID(item.spec["order_id"]), dedupe_key=item.dedupe_key)

    async def build(self, order_id: uuid.UUID, *, dedupe_key: str) -> EmailMessage | None:
        pool = self.core.db.pool
        data = await store.order_for_email(pool, order_id)
        if data is None or data["order"]["disabled_at"] is not None or not data["tickets"]:
            return None
        order = data["order"]
        e = await store.event_row(pool, order["event_id"])
        if e is None:
            return None
        (item,) = await self.calendars.with_sequences([self.calendars.event_item(e)])
        base = (self.core.settings.notify.app_url or self.core.settings.base_url).rstrip("/")
        context: dict[str, Any] = {
            "name": order["name"],
            "site_name": _site(self.core),
            "event": {"title": e["title"], "when": when(e["starts_at"], e["ends_at"], e["timezone"]),
                      "where": venue_text(e["venue"])},
            "order": {"id": str(order["id"]), "total_cents": order["total_cents"], "currency": order["currency"],
                      "items": [{"name": i["name"], "quantity": i["quantity"]} for i in data["items"]]},
            "tickets": [{"code": t["code"], "type_name": t["type_name"], "holder": t["holder"],
                         "cid": f"ticket-{t['id'].hex}@foyer"} for t in data["tickets"]],
            "tickets_url": f"{base}/me/tickets",
        }

        def assemble() -> EmailMessage:
            images = tuple(InlineImage(cid=t["cid"], data=qr_png(t["code"])) for t in context["tickets"])
            ics = build_calendar([item], name=e["title"])
            attachment = Attachment(filename=f"{e['slug'][:60] or 'event'}.ics", data=ics, maintype="text",
                                    subtype="calendar", params={"method": "PUBLISH"})
            return self.email.composer.build(name="order_confirmed", context=context, to_addr=order["email"],
                                             to_name=order["name"], dedupe_key=dedupe_key, inline_images=images,
                                             attachments=(attachment,), kind="order_confirmation")

        return await asyncio.get_running_loop().run_in_executor(None, assemble)


def _site(core: Core) -> str:
    from domain.notify.account_email import site_name

    return site_name(core.settings.notify.email_from)
