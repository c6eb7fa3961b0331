"""Test support for the notify area: a real local SMTP server (aiosmtpd), the local FCM server,
schedule rows written straight to PostgreSQL (for what no API exists yet), and a stand-in for the
relay that hands committed outbox rows to a consumer by name."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from storage.outbox import OutboxEvent
from tests.support.nodes import free_port


class SmtpSink:
    """aiosmtpd handler: keeps every received message (parsed) and can refuse the next N with a code."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._fail: list[str] = []
        self._lock = threading.Lock()

    def fail_next(self, reply: str, times: int = 1) -> None:
        with self._lock:
            self._fail.extend([reply] * times)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        with self._lock:
            if self._fail:
                return self._fail.pop(0)
            msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            self.messages.append(msg)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    async def wait_for(self, count: int, *, within: float = 5.0) -> list[EmailMessage]:
        deadline = asyncio.get_running_loop().time() + within
        while len(self.messages) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {count} emails, got {len(self.messages)}")
            await asyncio.sleep(0.02)
        return self.messages


def start_smtp() -> tuple[Controller, SmtpSink, int]:
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, sink, port


def parts(msg: EmailMessage) -> dict[str, Any]:
    """text, html, inline images and attachments of a received message."""
    out: dict[str, Any] = {"text": None, "html": None, "images": [], "attachments": []}
    for part in msg.walk():
        ctype = part.get_content_type()
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            out["attachments"].append(part)
        elif ctype == "text/plain" and out["text"] is None:
            out["text"] = part.get_content()
        elif ctype == "text/html" and out["html"] is None:
            out["html"] = part.get_content()
        elif ctype.startswith("image/"):
            out["images"].append(part)
    return out


# --- rows the events API will own (written directly until it is on main) ---------------------

async def make_event(db: Any, owner_id: str | uuid.UUID, *, status: str = "published", title: str = "PyCon Foyer",
                     starts_at: datetime | None = None, days: int = 2, timezone: str = "Europe/Berlin",
                     description: str = "Talks & <b>workshops</b>", cover: str | None = None,
                     slug: str | None = None) -> dict:
    starts_at = starts_at or (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    row = await db.fetchrow(
        """INSERT INTO events (owner_id, slug, title, description, starts_at, ends_at, timezone, status,
                               published_at, venue, cover_image_url, tags)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $8 <> 'draft' THEN now() END, $9, $10, $11)
           RETURNING *""",
        uuid.UUID(str(owner_id)), slug or f"ev-{uuid.uuid4().hex[:10]}", title, description, starts_at,
        starts_at + timedelta(days=days), timezone, status, {"name": "Congress Hall", "city": "Berlin"}, cover,
        ["python"],
    )
    await db.execute("INSERT INTO event_members (event_id, user_id, role) VALUES ($1, $2, 'organizer')",
                     row["id"], uuid.UUID(str(owner_id)))
    return dict(row)


async def make_session(db: Any, event_id: uuid.UUID, *, starts_at: datetime, minutes: int = 45,
                       title: str = "Async all the way", room: str = "Room A") -> dict:
    row = await db.fetchrow(
        """INSERT INTO sessions (event_id, title, abstract, starts_at, ends_at, room, track)
           VALUES ($1, $2, 'How to never block the loop.', $3, $4, $5, 'Core') RETURNING *""",
        event_id, title, starts_at, starts_at + timedelta(minutes=minutes), room,
    )
    return dict(row)


async def bookmark(db: Any, user_id: str, session_id: uuid.UUID) -> None:
    await db.execute("INSERT INTO agenda_items (user_id, session_id) VALUES ($1, $2)", uuid.UUID(user_id), session_id)


async def add_attendee(db: Any, event_id: uuid.UUID, user_id: str) -> None:
    await db.execute("INSERT INTO event_members (event_id, user_id, role) VALUES ($1, $2, 'attendee')",
                     event_id, uuid.UUID(user_id))


async def append_outbox(db: Any, type: str, data: dict, *, event_id: uuid.UUID | None = None) -> OutboxEvent:
    from storage import outbox

    async with db.transaction("test_fact") as conn:
        return await outbox.append(conn, type=type, data=data, event_id=event_id)


async def deliver(app: Any, consumer_name: str, *, after_seq: int = 0) -> list[OutboxEvent]:
    """Hand every committed outbox row the consumer wants (seq order) to its `handle`, like the relay."""
    from handlers.api import CORE
    from server.app import COMPONENTS

    core = app[CORE]
    consumer = next(c for comp in app[COMPONENTS] if comp.consumers
                    for c in comp.consumers(app, core) if c.name == consumer_name)
    rows = await core.db.fetch("SELECT * FROM outbox WHERE seq > $1 ORDER BY seq", after_seq)
    events = [OutboxEvent.from_row(r) for r in rows]
    handled = []
    for event in events:
        if consumer.types is None or event.type in consumer.types:
            await consumer.handle(event)
            handled.append(event)
    return handled


async def eventually(check: Callable[[], Any], *, within: float = 5.0, interval: float = 0.03) -> Any:
    """Poll an (async or sync) predicate until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
