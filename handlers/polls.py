"""Polls over HTTP: moderators and organizers create, edit, open and close them; attendees read.
Voting and live results are on the /live socket (docs/protocol.md, rooms/polls.py)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from aiohttp import web

from handlers.api import ApiRequest, Router, json_response
from rooms import poll_admin
from rooms.poll_rules import PollBody

router = Router("polls", "Polls per session or per event: single/multiple choice, rating, word cloud, quiz. "
                         "Managed here (draft → open → closed); voted on the /live socket.")

_MANAGE_ERRORS = ("forbidden", "validation_failed", "invalid_state")


class Option(msgspec.Struct):
    id: str
    text: str


class PollOut(msgspec.Struct, omit_defaults=True):
    id: uuid.UUID
    room: str  # session:<id> or event:<id>: where it is shown and voted
    kind: str
    question: str
    state: str  # draft | open | closed
    allow_change: bool
    show_results: str  # live | after_close: when attendees see results
    opened_at: int | None = None  # ms
    closed_at: int | None = None
    options: list[Option] | None = None
    max_choices: int | None = None
    scale: dict[str, int] | None = None  # rating: {min, max}
    points: int | None = None  # quiz
    multiple: bool | None = None  # quiz with several correct options
    correct: list[str] | None = None  # quiz: managers always, attendees once closed
    session_id: uuid.UUID | None = None
    voters: int | None = None
    # single/multiple/quiz: {counts: {option id: n}}; rating: {counts: {value: n}, average};
    # word_cloud: {words: [{text, count}]} (the largest `poll_wordcloud_top`)
    results: dict[str, Any] | None = None
    seq: int | None = None


class PollList(msgspec.Struct):
    polls: list[dict[str, Any]]


@router.post("/api/events/{id}/polls", summary="Create a poll (a draft) for the event or one of its sessions",
             status=201, body=PollBody, response=PollOut, errors=_MANAGE_ERRORS)
async def create_poll(req: ApiRequest) -> web.Response:
    """Moderators and organizers (`polls.manage`). `session_id` omitted: an event-wide poll."""
    return json_response(await poll_admin.create(req.core, req.principal, req.params["id"], req.body), status=201)


@router.get("/api/events/{id}/polls", summary="The event's polls with results (drafts for managers only)",
            response=PollList, errors=("forbidden",))
async def list_polls(req: ApiRequest) -> dict:
    """Managers see every poll, with results; attendees who may join the event's live rooms see
    open and closed polls, with results when the poll shows them."""
    return await poll_admin.list_for_event(req.core, req.principal, req.params["id"])


@router.get("/api/polls/{id}", summary="A poll with its results (as the caller may see them)", response=PollOut,
            errors=("forbidden",))
async def get_poll(req: ApiRequest) -> dict:
    return await poll_admin.get(req.core, req.principal, req.params["id"])


@router.put("/api/polls/{id}", summary="Replace a draft poll's definition", body=PollBody, response=PollOut,
            errors=_MANAGE_ERRORS)
async def replace_poll(req: ApiRequest) -> dict:
    return await poll_admin.replace(req.core, req.principal, req.params["id"], req.body)


@router.delete("/api/polls/{id}", summary="Delete a draft poll", status=204, errors=_MANAGE_ERRORS)
async def delete_poll(req: ApiRequest) -> None:
    await poll_admin.delete(req.core, req.principal, req.params["id"])


@router.post("/api/polls/{id}/open", summary="Open a draft poll for voting (emits poll:opened)", response=PollOut,
             errors=_MANAGE_ERRORS)
async def open_poll(req: ApiRequest) -> dict:
    return await poll_admin.open_poll(req.core, req.principal, req.params["id"])


@router.post("/api/polls/{id}/close", summary="Close an open poll: final results, quiz scores (emits poll:closed)",
             response=PollOut, errors=_MANAGE_ERRORS)
async def close_poll(req: ApiRequest) -> dict:
    """Votes in flight when the close arrives are counted or refused (`poll_closed`), never lost."""
    return await poll_admin.close_poll(req.core, req.principal, req.params["id"])
