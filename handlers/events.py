"""Events over HTTP: create, read, update, delete, publish, cancel, list/search, my events.

Authorization is decided by `domain.policy` inside each domain call: events the caller may not
view answer `not_found` (drafts are invisible to strangers), visible ones the caller may not
change answer `forbidden`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from domain import events
from domain.event_input import EventCreate, EventPatch
from handlers.api import ApiRequest, Router, decode_body

router = Router("events", "Events: drafts, publishing, cancellation, listing and search.")

Slug = Annotated[str, msgspec.Meta(max_length=80)]


@router.post("/api/events", summary="Create an event (a draft; you become its owner and organizer)", status=201,
             body=EventCreate, response=events.EventOut, errors=("forbidden",), idempotency="events.create")
async def create_event(req: ApiRequest) -> events.EventOut:
    return await events.create_event(req.core, req.principal, req.body)


@router.get("/api/events", summary="List and search published events (keyset pagination)", auth="optional",
            query=events.EventListQuery, response=events.EventPage)
async def list_events(req: ApiRequest) -> events.EventPage:
    """Published events in (starts_at, id) order. `from`/`to` keep events overlapping that range,
    `q` is full-text (websearch syntax), `tag` one tag; follow `next_cursor` for the next page."""
    return await events.list_events(req.core, req.principal, req.query)


@router.get("/api/me/events", summary="Events where you are on the team (or hold `role`), drafts included",
            query=events.MyEventsQuery, response=events.EventPage)
async def my_events(req: ApiRequest) -> events.EventPage:
    return await events.my_events(req.core, req.principal, req.query)


@router.get("/api/events/{id}", summary="One event", auth="optional", response=events.EventOut)
async def get_event(req: ApiRequest) -> events.EventOut:
    return await events.get_event(req.core, req.principal, req.params["id"])


@router.get("/api/events/by-slug/{slug}", summary="One event by its slug", auth="optional",
            response=events.EventOut)
async def get_event_by_slug(req: ApiRequest) -> events.EventOut:
    return await events.get_event_by_slug(req.core, req.principal, req.params["slug"][:80])


@router.patch("/api/events/{id}", summary="Change an event (only the fields given)", body=EventPatch,
              response=events.EventOut, errors=("forbidden", "invalid_state", "schedule_conflict"))
async def update_event(req: ApiRequest) -> events.EventOut:
    return await events.update_event(req.core, req.principal, req.params["id"], req.body)


@router.delete("/api/events/{id}", summary="Delete a draft (published events are cancelled instead)", status=204,
               errors=("forbidden", "invalid_state"))
async def delete_event(req: ApiRequest) -> None:
    await events.delete_event(req.core, req.principal, req.params["id"])


@router.post("/api/events/{id}/publish", summary="Publish a draft (organizers and admins with 2FA)",
             response=events.EventOut, errors=("forbidden", "two_factor_required", "invalid_state"),
             idempotency="events.publish")
async def publish_event(req: ApiRequest) -> events.EventOut:
    return await events.publish_event(req.core, req.principal, req.params["id"])


@router.post("/api/events/{id}/cancel", summary="Cancel a published event (owner or admin)",
             response=events.EventOut, errors=("forbidden", "invalid_state", "validation_failed"),
             idempotency="events.cancel")
async def cancel_event(req: ApiRequest) -> events.EventOut:
    """Optional JSON body `{"reason": "..."}` (at most 1000 characters), shown with the event."""
    raw = await req.request.read()
    body = decode_body(raw, events.CancelBody) if raw.strip() else events.CancelBody()
    return await events.cancel_event(req.core, req.principal, req.params["id"], body.reason)
