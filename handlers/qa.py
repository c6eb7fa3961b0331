"""Q&A over HTTP: the moderation audit trail (the live Q&A itself is on the socket, docs/protocol.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from handlers.api import ApiRequest, Router
from rooms.qa_views import audit_trail

router = Router("qa", "Q&A per session: the audit trail of moderation actions (the Q&A itself is live, "
                      "on the /live socket).")


class AuditQuery(msgspec.Struct, forbid_unknown_fields=True):
    session_id: uuid.UUID | None = None
    before: Annotated[int, msgspec.Meta(ge=1)] | None = None  # an entry id: older entries only
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50


class Actor(msgspec.Struct):
    id: uuid.UUID
    name: str


class AuditEntry(msgspec.Struct):
    id: int
    session_id: uuid.UUID
    question_id: uuid.UUID | None
    action: str  # approve, dismiss, answer, unanswer, pin, unpin, settings
    actor: Actor | None
    detail: dict[str, Any]
    question_text: str | None
    created_at: datetime


class AuditPage(msgspec.Struct):
    entries: list[AuditEntry]
    next_before: int | None


@router.get("/api/events/{id}/qa/audit", summary="Q&A moderation audit trail (organizers), newest first",
            query=AuditQuery, response=AuditPage, errors=("forbidden",))
async def qa_audit(req: ApiRequest) -> dict:
    """Every moderation action on the event's questions: who, what, when. Page with `before`."""
    q = req.query
    return await audit_trail(req.core, req.principal, req.params["id"], session_id=q.session_id, before=q.before,
                             limit=q.limit)
