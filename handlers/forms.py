"""Registration forms over HTTP: questions (organizers), answers of a ticket (its holder). Buyers
answer in `POST /api/events/{id}/orders` (`answers: {question id: value}`)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from domain.forms import AnswersIn, QuestionIn, QuestionPatch
from handlers.api import ApiRequest, Router
from handlers.checkin import door

router = Router("forms", "Registration forms: questions per event or ticket type, attendees' answers.")


class QuestionOut(msgspec.Struct):
    id: uuid.UUID
    label: str
    help: str
    kind: str
    required: bool
    options: list[str]
    ticket_type_ids: list[uuid.UUID]
    position: int
    status: str
    min_value: float | None = None
    max_value: float | None = None
    max_length: int | None = None


class QuestionsQuery(msgspec.Struct, forbid_unknown_fields=True):
    ticket_type_id: uuid.UUID | None = None


class TicketAnswersOut(msgspec.Struct):
    ticket_id: uuid.UUID
    editable: bool
    questions: list[QuestionOut]
    answers: dict[str, Any]


_Q = "/api/events/{event_id}/form/questions"


@router.post(_Q, summary="Add a registration question (organizers)", status=201, body=QuestionIn,
             response=QuestionOut, errors=("not_found", "forbidden", "validation_failed"))
async def create_question(req: ApiRequest) -> dict:
    """`kind`: text, number, single_choice, multiple_choice, checkbox (required = must be checked),
    date (YYYY-MM-DD). `ticket_type_ids`: ask only buyers of these types (empty: everyone)."""
    return await door(req).forms.create(req.principal, req.params["event_id"], req.body)


@router.get(_Q, summary="The registration questions (for one ticket type with ?ticket_type_id=)",
            auth="optional", query=QuestionsQuery, response=list[QuestionOut], errors=("not_found",))
async def list_questions(req: ApiRequest) -> list:
    return await door(req).forms.list(req.principal, req.params["event_id"], req.query.ticket_type_id)


@router.patch(_Q + "/{question_id}", summary="Change a registration question (organizers)", body=QuestionPatch,
              response=QuestionOut, errors=("not_found", "forbidden", "validation_failed"))
async def update_question(req: ApiRequest) -> dict:
    return await door(req).forms.update(req.principal, req.params["event_id"], req.params["question_id"], req.body)


@router.delete(_Q + "/{question_id}", summary="Stop asking a question (answers given are kept)", status=204,
               errors=("not_found", "forbidden"))
async def archive_question(req: ApiRequest) -> None:
    await door(req).forms.archive(req.principal, req.params["event_id"], req.params["question_id"])


@router.get("/api/tickets/{ticket_id}/answers", summary="My ticket's registration answers",
            response=TicketAnswersOut, errors=("not_found",))
async def ticket_answers(req: ApiRequest) -> dict:
    return await door(req).forms.ticket_answers(req.principal, req.params["ticket_id"])


@router.put("/api/tickets/{ticket_id}/answers", summary="Change my ticket's registration answers (before the event)",
            body=AnswersIn, response=TicketAnswersOut, errors=("not_found", "invalid_state", "validation_failed"))
async def edit_ticket_answers(req: ApiRequest) -> dict:
    """Replaces all of this ticket's answers (validated like at order time)."""
    return await door(req).forms.edit_ticket_answers(req.principal, req.params["ticket_id"], req.body.answers)
