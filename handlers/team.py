"""An event's team over HTTP: co-organizers, moderators, staff (door scanners)."""

from __future__ import annotations

from aiohttp import web

from domain import team
from handlers.api import ApiRequest, Router, json_response

router = Router("team", "Who runs an event: co-organizers, moderators and door staff.")

_ERRORS = ("forbidden", "validation_failed")


async def _add(req: ApiRequest, role: str) -> web.Response:
    member, added = await team.add_member(req.core, req.principal, req.params["id"], req.body.user_id, role)
    return json_response(member, status=201 if added else 200)


@router.post("/api/events/{id}/organizers", summary="Add a co-organizer (owner or admin); 200 if already one",
             status=201, body=team.AddMemberBody, response=team.MemberOut, errors=_ERRORS)
async def add_organizer(req: ApiRequest) -> web.Response:
    return await _add(req, "organizer")


@router.post("/api/events/{id}/moderators", summary="Add a moderator (organizers); 200 if already one",
             status=201, body=team.AddMemberBody, response=team.MemberOut, errors=_ERRORS)
async def add_moderator(req: ApiRequest) -> web.Response:
    return await _add(req, "moderator")


@router.post("/api/events/{id}/staff", summary="Add door staff (organizers); 200 if already staff",
             status=201, body=team.AddMemberBody, response=team.MemberOut, errors=_ERRORS)
async def add_staff(req: ApiRequest) -> web.Response:
    return await _add(req, "staff")


@router.get("/api/events/{id}/team", summary="The event's team (organizers and moderators may look)",
            auth="optional", response=team.TeamOut, errors=("forbidden",))
async def get_team(req: ApiRequest) -> team.TeamOut:
    return await team.list_team(req.core, req.principal, req.params["id"])


@router.delete("/api/events/{id}/team/{user_id}/{role}", summary="Remove a team role (not the owner's)",
               status=204, errors=("forbidden", "invalid_state", "validation_failed"))
async def remove_member(req: ApiRequest) -> None:
    await team.remove_member(req.core, req.principal, req.params["id"], req.params["user_id"], req.params["role"])
