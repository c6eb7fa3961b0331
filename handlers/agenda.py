"""The personal agenda over HTTP: bookmarked sessions of the signed-in user."""

from __future__ import annotations

from domain import agenda
from handlers.api import ApiRequest, Router

router = Router("agenda", "Your personal agenda: sessions you bookmarked.")


@router.get("/api/me/agenda", summary="Your bookmarked sessions in time order (optionally of one event)",
            query=agenda.AgendaQuery, response=agenda.AgendaOut)
async def get_agenda(req: ApiRequest) -> agenda.AgendaOut:
    return await agenda.agenda(req.core, req.principal, req.query.event_id)


@router.put("/api/me/agenda/{session_id}", summary="Bookmark a session (idempotent)", response=agenda.BookmarkOut,
            errors=("forbidden", "invalid_state"))
async def bookmark(req: ApiRequest) -> agenda.BookmarkOut:
    return await agenda.bookmark(req.core, req.principal, req.params["session_id"])


@router.delete("/api/me/agenda/{session_id}", summary="Remove a bookmark (idempotent)", status=204)
async def unbookmark(req: ApiRequest) -> None:
    await agenda.unbookmark(req.core, req.principal, req.params["session_id"])
