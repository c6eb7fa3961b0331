"""Calendar files (.ics) for events, schedules and the personal agenda feed; add-to-calendar links."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec
from aiohttp import web

from domain.errors import not_found
from handlers.api import ApiRequest, Router
from handlers.devices import NOTIFY

router = Router("calendar", "iCalendar files, subscribable agenda feeds and add-to-calendar links.")

_FEED_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")
ICS = "text/calendar"


class CalendarLinks(msgspec.Struct):
    ics: str
    google: str
    outlook: str
    office365: str


class FeedOut(msgspec.Struct):
    active: bool
    url: str | None = None
    webcal_url: str | None = None
    created_at: datetime | None = None
    last_fetched_at: datetime | None = None


def ics_response(body: bytes, filename: str, *, cache_seconds: int = 0) -> web.Response:
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", filename)[:80] or "calendar"
    headers = {"Content-Disposition": f'inline; filename="{safe}.ics"',
               "Cache-Control": f"private, max-age={cache_seconds}" if cache_seconds else "no-cache"}
    return web.Response(body=body, content_type=ICS, charset="utf-8", headers=headers)


@router.get("/api/events/{id}/calendar.ics", summary="The event as an iCalendar file", auth="optional",
            content_type=ICS)
async def event_ics(req: ApiRequest) -> web.Response:
    body, slug = await req.app[NOTIFY].calendars.event_ics(req.principal, req.params["id"])
    return ics_response(body, slug)


@router.get("/api/events/{id}/schedule.ics", summary="Every session of the event as an iCalendar file",
            auth="optional", content_type=ICS)
async def schedule_ics(req: ApiRequest) -> web.Response:
    """Cancelled sessions are included with STATUS:CANCELLED; UIDs are stable and SEQUENCE grows
    with every significant change, so re-importing updates entries."""
    body, slug = await req.app[NOTIFY].calendars.schedule_ics(req.principal, req.params["id"])
    return ics_response(body, f"{slug}-schedule")


@router.get("/api/events/{id}/calendar-links", summary="Add-to-calendar links for the event (Google, Outlook, .ics)",
            auth="optional", response=CalendarLinks)
async def event_links(req: ApiRequest) -> dict:
    return await req.app[NOTIFY].calendars.event_links(req.principal, req.params["id"])


@router.get("/api/sessions/{id}/calendar-links", summary="Add-to-calendar links for one session",
            auth="optional", response=CalendarLinks)
async def session_links(req: ApiRequest) -> dict:
    return await req.app[NOTIFY].calendars.session_links(req.principal, req.params["id"])


@router.get("/api/me/calendar-feed", summary="Whether the caller has an agenda feed URL", response=FeedOut)
async def feed_status(req: ApiRequest) -> dict:
    """The URL itself is shown only when created or rotated (only a hash of its secret is stored)."""
    return await req.app[NOTIFY].calendars.feed_status(req.user_id)


@router.post("/api/me/calendar-feed", summary="Create or rotate the caller's secret agenda feed URL", status=201,
             response=FeedOut)
async def rotate_feed(req: ApiRequest) -> dict:
    """Subscribe to `webcal_url` in any calendar app. Rotating revokes the previous URL at once."""
    return await req.app[NOTIFY].calendars.rotate_feed(req.user_id)


@router.delete("/api/me/calendar-feed", summary="Revoke the caller's agenda feed URL", status=204)
async def revoke_feed(req: ApiRequest) -> None:
    await req.app[NOTIFY].calendars.revoke_feed(req.user_id)


@router.get("/cal/{token}.ics", summary="A personal agenda feed (bookmarked sessions) for calendar apps",
            auth="none", content_type=ICS, errors=("not_found",))
async def agenda_feed(req: ApiRequest) -> web.Response:
    token = req.params["token"]
    if not _FEED_TOKEN.match(token):
        raise not_found("calendar feed")
    body = await req.app[NOTIFY].calendars.feed_ics(token)
    return ics_response(body, "agenda")
