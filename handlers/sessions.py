"""The schedule over HTTP: sessions, speakers, and the versioned schedule with ETags and deltas."""

from __future__ import annotations

from aiohttp import web

from domain import schedule, speakers
from domain.event_input import SessionCreate, SessionPatch, SpeakerCreate, SpeakerPatch
from handlers.api import ApiRequest, Router, json_response

router = Router("schedule", "Sessions, speakers and the versioned schedule (offline sync with ?since=).")

_EDIT_ERRORS = ("forbidden", "invalid_state")


# --- schedule ------------------------------------------------------------------------------------------

def _if_none_match(req: ApiRequest) -> set[str]:
    header = req.header("If-None-Match") or ""
    tags = set()
    for part in header.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        if part:
            tags.add(part)
    return tags


@router.get("/api/events/{id}/schedule", summary="The event's schedule with its version (ETag; ?since= for a delta)",
            auth="optional", query=schedule.ScheduleQuery, response=schedule.ScheduleOut,
            headers=("If-None-Match",), errors=("forbidden",))
async def get_schedule(req: ApiRequest) -> web.Response:
    """Without `since`: the full schedule (event, sessions incl. cancelled ones, speakers) and
    `version`. With `since=N`: only the changes after version N, in order (`data` is the entity
    after the change, null for deletions). Both carry an ETag; send it back in If-None-Match to
    get 304 Not Modified while nothing changed."""
    tags = _if_none_match(req)
    etag, result = await schedule.get_schedule(
        req.core, req.principal, req.params["id"], since=req.query.since,
        not_modified=lambda tag: tag in tags or "*" in tags,
    )
    headers = {"ETag": etag, "Cache-Control": "private, no-cache", "Vary": "Authorization"}
    if isinstance(result, schedule.NotModified):
        return web.Response(status=304, headers=headers)
    return json_response(result, headers=headers)


# --- sessions -----------------------------------------------------------------------------------------

@router.post("/api/events/{id}/sessions", summary="Add a session", status=201, body=SessionCreate,
             response=schedule.SessionOut, errors=(*_EDIT_ERRORS, "schedule_conflict"),
             idempotency="sessions.create")
async def create_session(req: ApiRequest) -> schedule.SessionOut:
    return await schedule.create_session(req.core, req.principal, req.params["id"], req.body)


@router.get("/api/sessions/{id}", summary="One session", auth="optional", response=schedule.SessionOut)
async def get_session(req: ApiRequest) -> schedule.SessionOut:
    return await schedule.get_session(req.core, req.principal, req.params["id"])


@router.patch("/api/sessions/{id}", summary="Change a session (only the fields given)", body=SessionPatch,
              response=schedule.SessionOut, errors=(*_EDIT_ERRORS, "schedule_conflict"))
async def update_session(req: ApiRequest) -> schedule.SessionOut:
    return await schedule.update_session(req.core, req.principal, req.params["id"], req.body)


@router.delete("/api/sessions/{id}", summary="Delete a session (removes bookmarks; prefer cancel)", status=204,
               errors=_EDIT_ERRORS)
async def delete_session(req: ApiRequest) -> None:
    await schedule.delete_session(req.core, req.principal, req.params["id"])


@router.post("/api/sessions/{id}/cancel", summary="Cancel a session (stays listed as cancelled, frees the room)",
             response=schedule.SessionOut, errors=_EDIT_ERRORS)
async def cancel_session(req: ApiRequest) -> schedule.SessionOut:
    return await schedule.cancel_session(req.core, req.principal, req.params["id"])


@router.put("/api/sessions/{id}/speakers/{speaker_id}", summary="Assign a speaker to a session (idempotent)",
            response=schedule.SessionOut, errors=_EDIT_ERRORS)
async def assign_speaker(req: ApiRequest) -> schedule.SessionOut:
    return await schedule.assign_speaker(req.core, req.principal, req.params["id"], req.params["speaker_id"],
                                         assign=True)


@router.delete("/api/sessions/{id}/speakers/{speaker_id}", summary="Unassign a speaker from a session",
               response=schedule.SessionOut, errors=_EDIT_ERRORS)
async def unassign_speaker(req: ApiRequest) -> schedule.SessionOut:
    return await schedule.assign_speaker(req.core, req.principal, req.params["id"], req.params["speaker_id"],
                                         assign=False)


# --- speakers -----------------------------------------------------------------------------------------

@router.post("/api/events/{id}/speakers", summary="Add a speaker", status=201, body=SpeakerCreate,
             response=speakers.SpeakerOut, errors=_EDIT_ERRORS, idempotency="speakers.create")
async def create_speaker(req: ApiRequest) -> speakers.SpeakerOut:
    return await speakers.create_speaker(req.core, req.principal, req.params["id"], req.body)


@router.get("/api/events/{id}/speakers", summary="The event's speakers", auth="optional",
            response=speakers.SpeakerList)
async def list_speakers(req: ApiRequest) -> speakers.SpeakerList:
    return await speakers.list_speakers(req.core, req.principal, req.params["id"])


@router.get("/api/speakers/{id}", summary="One speaker", auth="optional", response=speakers.SpeakerOut)
async def get_speaker(req: ApiRequest) -> speakers.SpeakerOut:
    return await speakers.get_speaker(req.core, req.principal, req.params["id"])


@router.patch("/api/speakers/{id}", summary="Change a speaker (only the fields given)", body=SpeakerPatch,
              response=speakers.SpeakerOut, errors=_EDIT_ERRORS)
async def update_speaker(req: ApiRequest) -> speakers.SpeakerOut:
    return await speakers.update_speaker(req.core, req.principal, req.params["id"], req.body)


@router.delete("/api/speakers/{id}", summary="Delete a speaker (unassigns it from its sessions)", status=204,
               errors=_EDIT_ERRORS)
async def delete_speaker(req: ApiRequest) -> None:
    await speakers.delete_speaker(req.core, req.principal, req.params["id"])
