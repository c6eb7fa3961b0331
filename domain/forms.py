"""Registration forms: organizers' questions, buyers' answers at order time, holders' edits.

Guarantees:
- Answers are validated against the event's active questions that apply to the ticket types of
  the order (a question with no `ticket_type_ids` applies to every type): every problem is
  reported at once as `validation_failed` with one detail per field (`answers.<question id>`).
  Unknown or not-applicable question ids are refused (no free-form data smuggled in).
- Order-time answers are written in the hold batch's transaction (a batch hook): an order
  exists with its answers or not at all. They belong to every ticket of the order until a
  holder edits their own ticket's answers (before the event starts).
- The order path reads questions from an in-process cache (`FOYER_SALE_CACHE_SECONDS`): no
  PostgreSQL work per order; a question added on another node is enforced within that time.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Annotated, Any, Literal

import msgspec

from domain.cache import ReadThroughCache
from domain.errors import FoyerError, field_error, not_found, validation_failed
from domain.identity import Principal
from domain.policy import Action, authorize
from domain.tickets.models import HoldOutcome, HoldRequest
from domain.tickets.rules import HoldContext
from storage import forms as store
from storage.db import Database

Kind = Literal["text", "number", "single_choice", "multiple_choice", "checkbox", "date"]
Option = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
TEXT_MAX = 2000


class QuestionIn(msgspec.Struct, forbid_unknown_fields=True):
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    kind: Kind
    required: bool = False
    help: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    options: Annotated[list[Option], msgspec.Meta(max_length=100)] = []
    ticket_type_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=100)] = []
    min_value: float | None = None
    max_value: float | None = None
    max_length: Annotated[int, msgspec.Meta(ge=1, le=TEXT_MAX)] | None = None
    position: int = 0


class QuestionPatch(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=300)] | None = None
    required: bool | None = None
    help: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    options: Annotated[list[Option], msgspec.Meta(max_length=100)] | None = None
    ticket_type_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=100)] | None = None
    min_value: float | None = None
    max_value: float | None = None
    max_length: Annotated[int, msgspec.Meta(ge=1, le=TEXT_MAX)] | None = None
    position: int | None = None


class AnswersIn(msgspec.Struct, forbid_unknown_fields=True):
    answers: dict[str, Any]


def question_public(q: Any) -> dict[str, Any]:
    return {"id": str(q["id"]), "label": q["label"], "help": q["help"], "kind": q["kind"], "required": q["required"],
            "options": list(q["options"] or []), "ticket_type_ids": [str(t) for t in q["ticket_type_ids"] or []],
            "min_value": q["min_value"], "max_value": q["max_value"], "max_length": q["max_length"],
            "position": q["position"], "status": q["status"]}


def applicable(questions: Iterable[Any], type_ids: Iterable[uuid.UUID]) -> list[Any]:
    wanted = set(type_ids)
    return [q for q in questions if q["status"] == "active"
            and (not q["ticket_type_ids"] or wanted & set(q["ticket_type_ids"]))]


def _check_value(q: Any, value: Any) -> tuple[Any, str | None]:
    """(clean value, error message or None) for one answer; value is not None."""
    kind = q["kind"]
    if kind == "text":
        if not isinstance(value, str):
            return None, "must be text"
        value = value.strip()
        limit = q["max_length"] or TEXT_MAX
        if len(value) > limit:
            return None, f"at most {limit} characters"
        if q["required"] and not value:
            return None, "required"
        return value, None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None, "must be a number"
        if q["min_value"] is not None and value < q["min_value"]:
            return None, f"at least {q['min_value']:g}"
        if q["max_value"] is not None and value > q["max_value"]:
            return None, f"at most {q['max_value']:g}"
        return value, None
    if kind == "single_choice":
        if value not in (q["options"] or []):
            return None, "must be one of the options"
        return value, None
    if kind == "multiple_choice":
        if not isinstance(value, list) or any(v not in (q["options"] or []) for v in value):
            return None, "must be a list of the options"
        if len(set(value)) != len(value):
            return None, "an option is chosen twice"
        if q["required"] and not value:
            return None, "required"
        return value, None
    if kind == "checkbox":
        if not isinstance(value, bool):
            return None, "must be true or false"
        if q["required"] and not value:
            return None, "must be checked"
        return value, None
    if kind == "date":
        try:
            if not isinstance(value, str) or len(value) != 10:
                raise ValueError
            return date.fromisoformat(value).isoformat(), None
        except ValueError:
            return None, "must be a date (YYYY-MM-DD)"
    return None, "unknown question kind"


def validate_answers(questions: Sequence[Any], answers: dict[str, Any] | None, type_ids: Iterable[uuid.UUID],
                     *, prefix: str = "answers") -> dict[str, Any]:
    """Clean answers for the questions that apply to `type_ids`, or `validation_failed` listing
    every problem (`{prefix}.<question id>`)."""
    answers = answers or {}
    relevant = {str(q["id"]): q for q in applicable(questions, type_ids)}
    errors: list[dict[str, str]] = []
    clean: dict[str, Any] = {}
    for key in answers:
        if key not in relevant:
            errors.append({"field": f"{prefix}.{key}", "message": "not a question for these tickets"})
    for qid, q in relevant.items():
        value = answers.get(qid)
        if value is None:
            if q["required"]:
                errors.append({"field": f"{prefix}.{qid}", "message": "required"})
            continue
        cleaned, problem = _check_value(q, value)
        if problem is not None:
            errors.append({"field": f"{prefix}.{qid}", "message": problem})
        else:
            clean[qid] = cleaned
    if errors:
        raise validation_failed(errors, "some answers are missing or not valid")
    return clean


def _check_question(kind: str, options: list[str], min_value: float | None, max_value: float | None) -> None:
    choice = kind in ("single_choice", "multiple_choice")
    if choice and not options:
        raise field_error("options", "choice questions need options")
    if not choice and options:
        raise field_error("options", "only choice questions have options")
    if len(set(options)) != len(options):
        raise field_error("options", "options must be unique")
    if min_value is not None and max_value is not None and max_value < min_value:
        raise field_error("max_value", "must be at least min_value")


class Forms:
    def __init__(self, *, db: Database, cache_seconds: float) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        self._cache: ReadThroughCache[list[Any]] = ReadThroughCache(cache_seconds, stale_on_error=True)

    # --- organizers -------------------------------------------------------------------------------
    async def create(self, principal: Principal, event_id: uuid.UUID, body: QuestionIn) -> dict[str, Any]:
        _check_question(body.kind, body.options, body.min_value, body.max_value)
        fields = msgspec.structs.asdict(body)
        async with self.db.transaction("forms.create_question") as conn:
            await authorize(conn, principal, Action.MANAGE_TICKETS, event_id)
            await self._check_types(conn, event_id, body.ticket_type_ids)
            row = await store.create_question(conn, event_id, fields)
        self._cache.invalidate(event_id)
        return question_public(row)

    async def update(self, principal: Principal, event_id: uuid.UUID, question_id: uuid.UUID,
                     body: QuestionPatch) -> dict[str, Any]:
        fields = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}
        async with self.db.transaction("forms.update_question") as conn:
            await authorize(conn, principal, Action.MANAGE_TICKETS, event_id)
            current = await store.get_question(conn, event_id, question_id)
            if current is None:
                raise not_found("question")
            _check_question(current["kind"], fields.get("options", list(current["options"] or [])),
                            fields.get("min_value", current["min_value"]), fields.get("max_value", current["max_value"]))
            await self._check_types(conn, event_id, fields.get("ticket_type_ids", []))
            row = await store.update_question(conn, event_id, question_id, fields)
        self._cache.invalidate(event_id)
        return question_public(row)

    async def archive(self, principal: Principal, event_id: uuid.UUID, question_id: uuid.UUID) -> None:
        """Stop asking; answers already given stay (and stay in exports)."""
        async with self.db.transaction("forms.archive_question") as conn:
            await authorize(conn, principal, Action.MANAGE_TICKETS, event_id)
            if await store.update_question(conn, event_id, question_id, {"status": "archived"}) is None:
                raise not_found("question")
        self._cache.invalidate(event_id)

    async def _check_types(self, conn: Any, event_id: uuid.UUID, type_ids: list[uuid.UUID]) -> None:
        if type_ids and len(await store.types_of_event(conn, event_id, type_ids)) != len(set(type_ids)):
            raise field_error("ticket_type_ids", "not a ticket type of this event")

    async def list(self, principal: Principal | None, event_id: uuid.UUID,
                   ticket_type_id: uuid.UUID | None) -> list[dict[str, Any]]:
        async with self.db.connection() as conn:
            access = await authorize(conn, principal, Action.VIEW_EVENT, event_id)
            manager = access.can(Action.MANAGE_TICKETS)
            rows = await store.list_questions(conn, event_id, active_only=not manager)
        if ticket_type_id is not None:
            rows = [q for q in rows if not q["ticket_type_ids"] or ticket_type_id in q["ticket_type_ids"]]
        return [question_public(q) for q in rows]

    # --- holders ------------------------------------------------------------------------------------
    async def _holder_ticket(self, principal: Principal, ticket_id: uuid.UUID, conn: Any) -> Any:
        t = await store.ticket_for_holder(conn, ticket_id)
        if t is None or t["holder_id"] != principal.user_id:
            raise not_found("ticket")
        return t

    async def ticket_answers(self, principal: Principal, ticket_id: uuid.UUID) -> dict[str, Any]:
        async with self.db.connection() as conn:
            t = await self._holder_ticket(principal, ticket_id, conn)
            questions = applicable(await store.list_questions(conn, t["event_id"]), [t["ticket_type_id"]])
            answers = await store.answers_of_ticket(conn, t["id"], t["order_id"])
        return {"ticket_id": str(t["id"]), "editable": t["status"] == "valid" and not t["started"],
                "questions": [question_public(q) for q in questions], "answers": answers}

    async def edit_ticket_answers(self, principal: Principal, ticket_id: uuid.UUID,
                                  answers: dict[str, Any]) -> dict[str, Any]:
        """The holder replaces their ticket's answers (all of them, validated) before the event."""
        async with self.db.transaction("forms.edit_answers") as conn:
            t = await self._holder_ticket(principal, ticket_id, conn)
            if t["status"] != "valid":
                raise FoyerError("invalid_state", "this ticket is void")
            if t["started"]:
                raise FoyerError("invalid_state", "answers can only be changed before the event starts")
            questions = await store.list_questions(conn, t["event_id"])
            clean = validate_answers(questions, answers, [t["ticket_type_id"]])
            await store.upsert_ticket_answers(conn, event_id=t["event_id"], order_id=t["order_id"], ticket_id=t["id"],
                                              user_id=principal.user_id, answers=clean)
        return await self.ticket_answers(principal, ticket_id)

    # --- the order path -------------------------------------------------------------------------------
    async def _questions(self, event_id: uuid.UUID) -> list[Any]:
        async def load() -> list[Any]:
            async with self.db.connection() as conn:
                return await store.list_questions(conn, event_id)

        return await self._cache.get(event_id, load)  # PostgreSQL unreachable: the last known questions

    async def pre_hold(self, ctx: HoldContext) -> None:
        questions = await self._questions(ctx.event.id)
        if not questions and not ctx.order.answers:
            return
        clean = validate_answers(questions, ctx.order.answers, [ln.ticket_type_id for ln in ctx.plan.lines])
        if clean:
            ctx.extra["answers"] = clean

    async def admit(self, conn: Any, requests: Sequence[HoldRequest],
                    types: Mapping[uuid.UUID, Any]) -> dict[uuid.UUID, HoldOutcome]:
        return {}

    async def placed(self, conn: Any, requests: Sequence[HoldRequest]) -> None:
        """Batch hook: the answers of the granted orders, in the hold's transaction."""
        await store.insert_order_answers(conn, [(r.event_id, r.order_id, r.user_id, r.extra["answers"])
                                                for r in requests if r.extra.get("answers")])
