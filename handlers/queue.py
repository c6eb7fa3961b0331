"""The waiting room over HTTP: organizers turn a queue on for a ticket type's on-sale; buyers join,
poll their position and get an access grant to send with their order (`X-Foyer-Queue-Grant`)."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from domain.queue import JoinIn, QueueConfigIn
from handlers.api import ApiRequest, Router
from handlers.checkin import door

router = Router("queue", "Waiting room for ticket drops: queue tokens, positions, access grants.")


class QueueConfigOut(msgspec.Struct):
    ticket_type_id: uuid.UUID
    enabled: bool
    admit_per_minute: int
    grant_seconds: int
    max_per_ip: int
    waiting: int
    admitted: int


class QueueOut(msgspec.Struct):
    event_id: uuid.UUID
    ticket_type_id: uuid.UUID
    status: str  # waiting | admitted | expired | open (no queue: buy directly)
    token: str | None = None
    position: int | None = None  # 1 = next to be admitted
    eta_seconds: int | None = None
    admit_per_minute: int | None = None
    grant: str | None = None  # send as header X-Foyer-Queue-Grant with the order
    grant_expires_at: datetime | None = None


_CFG = "/api/events/{event_id}/ticket-types/{ticket_type_id}/queue"


@router.put(_CFG, summary="Turn the waiting room on or off for a ticket type (organizers)", body=QueueConfigIn,
            response=QueueConfigOut, errors=("not_found", "forbidden", "validation_failed"))
async def configure_queue(req: ApiRequest) -> dict:
    """Buyers are admitted in arrival order at `admit_per_minute` (across all nodes); an admitted
    buyer may hold this type for `grant_seconds`; `max_per_ip` caps places per client IP."""
    return await door(req).queue.configure(req.principal, req.params["event_id"], req.params["ticket_type_id"],
                                           req.body)


@router.get(_CFG, summary="A ticket type's waiting room: settings and how many wait", response=QueueConfigOut,
            errors=("not_found", "forbidden"))
async def get_queue(req: ApiRequest) -> dict:
    return await door(req).queue.get_config(req.principal, req.params["event_id"], req.params["ticket_type_id"])


@router.post("/api/events/{event_id}/queue", summary="Join the waiting room (one place per account)", body=JoinIn,
             response=QueueOut, errors=("not_found", "validation_failed", "rate_limited", "invalid_state"))
async def join_queue(req: ApiRequest) -> dict:
    """Answers a signed queue `token` and the `position`; joining again returns the same place.
    `status: open` means the type has no queue: buy directly."""
    return await door(req).queue.join(req.principal, req.params["event_id"], req.body.ticket_type_id, req.client_ip)


@router.get("/api/events/{event_id}/queue/{token}", summary="My place in the waiting room, or my access grant",
            response=QueueOut, errors=("not_found", "rate_limited"))
async def queue_status(req: ApiRequest) -> dict:
    """Poll every few seconds. Once `admitted`, send `grant` as header `X-Foyer-Queue-Grant` with
    `POST /api/events/{id}/orders` before `grant_expires_at`."""
    return await door(req).queue.status(req.principal, req.params["event_id"], req.params["token"])
