"""Feedback: attendees rate sessions and the event; organizers read results and comments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from handlers.api import ApiRequest, Router
from handlers.devices import NOTIFY

router = Router("feedback", "Session and event ratings (1–5) with optional comments; results for organizers.")

Rating = Annotated[int, msgspec.Meta(ge=1, le=5)]
Comment = Annotated[str, msgspec.Meta(max_length=2000)]
_SUBMIT_ERRORS = ("forbidden", "invalid_state", "feedback_not_open")


class FeedbackBody(msgspec.Struct, forbid_unknown_fields=True):
    rating: Rating
    comment: Comment | None = None


class FeedbackOut(msgspec.Struct):
    id: uuid.UUID
    event_id: uuid.UUID
    session_id: uuid.UUID | None
    rating: int
    comment: str | None
    created_at: datetime
    updated_at: datetime
    changed: bool | None = None


class Summary(msgspec.Struct):
    count: int
    average: float | None
    distribution: list[int]  # counts of ratings 1..5
    comments: int


class SessionSummary(msgspec.Struct):
    session_id: uuid.UUID
    title: str
    starts_at: datetime
    status: str
    count: int
    average: float | None
    distribution: list[int]
    comments: int


class SpeakerSummary(msgspec.Struct):
    speaker_id: uuid.UUID
    name: str
    sessions: int
    count: int
    average: float | None


class Results(msgspec.Struct):
    event: Summary
    sessions: list[SessionSummary]
    speakers: list[SpeakerSummary]


class CommentsQuery(msgspec.Struct, forbid_unknown_fields=True):
    session_id: uuid.UUID | None = None
    event_level: bool = False  # only comments on the event itself
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50


class CommentOut(msgspec.Struct):
    id: uuid.UUID
    session_id: uuid.UUID | None
    session_title: str | None
    rating: int
    comment: str
    updated_at: datetime


class CommentsPage(msgspec.Struct):
    comments: list[CommentOut]
    next_cursor: str | None


@router.put("/api/sessions/{id}/feedback", summary="Rate a session (1–5, optional comment); changeable",
            body=FeedbackBody, response=FeedbackOut, errors=_SUBMIT_ERRORS)
async def rate_session(req: ApiRequest) -> dict:
    """Attendees only; opens when the session starts. Comments are visible to organizers only."""
    return await req.app[NOTIFY].feedback.submit(req.principal, session_id=req.params["id"], rating=req.body.rating,
                                                 comment=req.body.comment)


@router.get("/api/sessions/{id}/feedback", summary="The caller's rating of a session", response=FeedbackOut)
async def my_session_feedback(req: ApiRequest) -> dict:
    return await req.app[NOTIFY].feedback.mine(req.principal, session_id=req.params["id"])


@router.put("/api/events/{id}/feedback", summary="Rate the event (1–5, optional comment); changeable",
            body=FeedbackBody, response=FeedbackOut, errors=_SUBMIT_ERRORS)
async def rate_event(req: ApiRequest) -> dict:
    return await req.app[NOTIFY].feedback.submit(req.principal, event_id=req.params["id"], rating=req.body.rating,
                                                 comment=req.body.comment)


@router.get("/api/events/{id}/feedback", summary="The caller's rating of the event", response=FeedbackOut)
async def my_event_feedback(req: ApiRequest) -> dict:
    return await req.app[NOTIFY].feedback.mine(req.principal, event_id=req.params["id"])


@router.get("/api/events/{id}/feedback/results", summary="Ratings per session, per speaker and for the event",
            response=Results, errors=("forbidden", "two_factor_required"))
async def results(req: ApiRequest) -> dict:
    """Organizers (and admins) with 2FA."""
    return await req.app[NOTIFY].feedback.results(req.principal, req.params["id"])


@router.get("/api/events/{id}/feedback/comments", summary="Feedback comments, newest first (organizers)",
            query=CommentsQuery, response=CommentsPage, errors=("forbidden", "two_factor_required"))
async def comments(req: ApiRequest) -> dict:
    q: CommentsQuery = req.query
    return await req.app[NOTIFY].feedback.comments(req.principal, req.params["id"], session_id=q.session_id,
                                                   event_level=q.event_level, cursor=q.cursor, limit=q.limit)
