"""Networking over HTTP: the opt-in attendee directory, connection requests, blocks.

Live parts are on the /live socket (docs/protocol.md): `networking:request` / `networking:accepted`
in your `user:{id}` room, and one-to-one chat in `dm:{connection_id}` (`dm:send`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from aiohttp import web

from handlers.api import ApiRequest, Router, json_response
from rooms import networking

router = Router("networking", "Attendee directory (opt-in), connection requests and blocks; one-to-one chat "
                              "runs on the /live socket once a request is accepted.")

Short = Annotated[str, msgspec.Meta(max_length=100)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class ProfileBody(msgspec.Struct, forbid_unknown_fields=True):
    """Your directory entry; your name comes from your account."""

    title: Short = ""
    company: Short = ""
    interests: Annotated[list[Tag], msgspec.Meta(max_length=10)] = []
    bio: Annotated[str, msgspec.Meta(max_length=500)] = ""


class UserRef(msgspec.Struct):
    id: uuid.UUID
    name: str


class EntryOut(msgspec.Struct):
    user: UserRef
    title: str
    company: str
    interests: list[str]  # folded: trimmed, lower case
    bio: str
    updated_at: datetime


class DirectoryQuery(msgspec.Struct, forbid_unknown_fields=True):
    q: Annotated[str, msgspec.Meta(max_length=100)] | None = None  # name, title, company, interests, bio
    interest: Annotated[str, msgspec.Meta(max_length=40)] | None = None  # one exact interest
    cursor: Annotated[str, msgspec.Meta(max_length=400)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20


class DirectoryPage(msgspec.Struct):
    entries: list[EntryOut]
    next_cursor: str | None


class RequestBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: uuid.UUID
    message: Annotated[str, msgspec.Meta(max_length=300)] = ""


class OtherUser(msgspec.Struct, omit_defaults=True):
    id: uuid.UUID
    name: str | None = None
    title: str | None = None
    company: str | None = None


class ConnectionOut(msgspec.Struct, omit_defaults=True):
    id: uuid.UUID
    event_id: uuid.UUID
    status: str  # pending | accepted | declined
    direction: str  # outgoing | incoming
    message: str
    user: OtherUser  # the other person
    created_at: datetime
    responded_at: datetime | None = None
    room: str | None = None  # dm:<id> once accepted: join it for one-to-one chat


class ConnectionList(msgspec.Struct):
    connections: list[ConnectionOut]


class BlockBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: uuid.UUID


class BlockOut(msgspec.Struct):
    user: UserRef
    created_at: datetime


class BlockList(msgspec.Struct):
    blocks: list[BlockOut]


@router.put("/api/events/{id}/directory/me", summary="Join (or update your entry in) the event's directory",
            body=ProfileBody, response=EntryOut, errors=("forbidden", "validation_failed"))
async def opt_in(req: ApiRequest) -> dict:
    """Attendees and the event's team (`networking.use`)."""
    b = req.body
    return await networking.opt_in(req.core, req.principal, req.params["id"], title=b.title, company=b.company,
                                   interests=b.interests, bio=b.bio)


@router.get("/api/events/{id}/directory/me", summary="Your directory entry", response=EntryOut,
            errors=("forbidden",))
async def my_entry(req: ApiRequest) -> dict:
    return await networking.my_entry(req.core, req.principal, req.params["id"])


@router.delete("/api/events/{id}/directory/me", summary="Leave the event's directory", status=204,
               errors=("forbidden",))
async def opt_out(req: ApiRequest) -> None:
    await networking.opt_out(req.core, req.principal, req.params["id"])


@router.get("/api/events/{id}/directory", summary="Browse or search the other attendees in the directory",
            query=DirectoryQuery, response=DirectoryPage, errors=("forbidden", "opt_in_required"))
async def browse(req: ApiRequest) -> dict:
    """Only other opted-in attendees of this event, by name; people you blocked or who blocked you
    are not listed. You must be in the directory yourself (`opt_in_required`). Page with
    `next_cursor`."""
    q = req.query
    return await networking.browse(req.core, req.principal, req.params["id"], q=q.q, interest=q.interest,
                                   cursor=q.cursor, limit=q.limit)


@router.post("/api/events/{id}/connections", summary="Send a connection request", status=201,
             body=RequestBody, response=ConnectionOut,
             errors=("forbidden", "opt_in_required", "blocked", "rate_limited", "validation_failed"))
async def send_request(req: ApiRequest) -> web.Response:
    """201 with a new pending request; 200 with the existing connection when the pair already has
    one (if they had asked you, this accepts their request). Rate-limited per user."""
    view, created = await networking.request(req.core, req.principal, req.params["id"], req.body.user_id,
                                             req.body.message)
    return json_response(view, status=201 if created else 200)


@router.get("/api/events/{id}/connections", summary="Your connections and requests in the event",
            response=ConnectionList, errors=("forbidden",))
async def list_connections(req: ApiRequest) -> dict:
    return await networking.connections(req.core, req.principal, req.params["id"])


@router.post("/api/connections/{id}/accept", summary="Accept a connection request addressed to you",
             response=ConnectionOut, errors=("forbidden", "invalid_state"))
async def accept(req: ApiRequest) -> dict:
    """The requester gets `networking:accepted` in their `user:` room; both may then join `dm:{id}`."""
    return await networking.respond(req.core, req.principal, req.params["id"], accept=True)


@router.post("/api/connections/{id}/decline", summary="Decline a connection request addressed to you",
             response=ConnectionOut, errors=("forbidden", "invalid_state"))
async def decline(req: ApiRequest) -> dict:
    return await networking.respond(req.core, req.principal, req.params["id"], accept=False)


@router.delete("/api/connections/{id}", summary="Withdraw a request or remove a connection", status=204)
async def remove(req: ApiRequest) -> None:
    await networking.remove(req.core, req.principal, req.params["id"])


@router.post("/api/networking/blocks", summary="Block a user (everywhere); 200 if already blocked", status=201,
             body=BlockBody, errors=("validation_failed",))
async def block(req: ApiRequest) -> web.Response:
    """Hides each from the other's directory, refuses requests and messages both ways. The blocked
    user is not told: their requests stay pending, their messages are never delivered."""
    created = await networking.block(req.core, req.principal, req.body.user_id)
    return json_response({"user_id": str(req.body.user_id), "blocked": True}, status=201 if created else 200)


@router.delete("/api/networking/blocks/{user_id}", summary="Unblock a user", status=204)
async def unblock(req: ApiRequest) -> None:
    await networking.unblock(req.core, req.principal, req.params["user_id"])


@router.get("/api/networking/blocks", summary="The users you block", response=BlockList)
async def list_blocks(req: ApiRequest) -> dict:
    return await networking.blocks(req.core, req.principal)
