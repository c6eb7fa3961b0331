"""Organizer announcements to everyone in an event (the live lobby and, through notify, push).

`POST /api/events/{id}/announcements` records an `announcement.posted` outbox fact; the outbox
relay hands it to the live rooms (an `announcement` room event in `event:{id}`, replayed to
whoever reconnects) and to notify (in-app / push to the event's audience). Organizers only
(`live.announce`). Retry-safe with an `Idempotency-Key`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from domain.policy import Action, authorize
from handlers.api import ApiRequest, Router
from storage import outbox

router = Router("live", "Live rooms: organizer announcements (the rooms themselves are on the /live socket, "
                        "docs/protocol.md).")


class AnnouncementIn(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    title: Annotated[str, msgspec.Meta(max_length=200)] = ""


class AnnouncementOut(msgspec.Struct):
    id: uuid.UUID
    event_id: uuid.UUID
    title: str
    text: str
    posted_at: datetime


@router.post("/api/events/{id}/announcements", summary="Announce something to everyone in the event (organizers)",
             status=202, body=AnnouncementIn, response=AnnouncementOut, errors=("forbidden",),
             idempotency="live.announce")
async def post_announcement(req: ApiRequest) -> AnnouncementOut:
    """Accepted once the fact is committed; members of `event:{id}` get an `announcement` event
    within moments (through the outbox relay), and notify sends it to the event's audience."""
    event_id: uuid.UUID = req.params["id"]
    body: AnnouncementIn = req.body
    text, title = body.text.strip(), body.title.strip()
    if not text:
        from domain.errors import field_error

        raise field_error("text", "must not be empty")
    out = AnnouncementOut(id=uuid.uuid4(), event_id=event_id, title=title, text=text, posted_at=datetime.now(UTC))
    async with req.core.db.transaction("announcement.post") as conn:
        await authorize(conn, req.principal, Action.ANNOUNCE, event_id)
        await outbox.append(conn, type="announcement.posted", event_id=event_id, data={
            "id": str(out.id), "title": title, "text": text, "by": str(req.user_id),
            "posted_at": out.posted_at.isoformat()})
    return out
