"""Support and feedback requests from any signed-in user (handled by admins in handlers/admin.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from domain.errors import not_found
from handlers.api import ApiRequest, Router
from storage import admin as store
from storage import outbox

router = Router("support", "Ask the operators for help, or tell them something.")


class SupportBody(msgspec.Struct, forbid_unknown_fields=True):
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=5000)]
    kind: Literal["support", "feedback", "bug", "account"] = "support"
    event_id: uuid.UUID | None = None


class SupportOut(msgspec.Struct):
    id: uuid.UUID
    kind: str
    subject: str
    body: str
    status: str
    event_id: uuid.UUID | None = None


@router.post("/api/support", summary="Send a support or feedback request to the operators", status=201,
             body=SupportBody, response=SupportOut, errors=("unauthorized", "validation_failed", "not_found"))
async def submit_support(req: ApiRequest) -> dict:
    body: SupportBody = req.body
    async with req.core.db.transaction("support_submit") as conn:
        if body.event_id is not None and not await store.event_exists(conn, body.event_id):
            raise not_found("event")
        row = await store.create_support_request(conn, user_id=req.user_id, kind=body.kind,
                                                 subject=body.subject.strip(), body=body.body.strip(),
                                                 event_id=body.event_id)
        await outbox.append(conn, type="support.request_submitted", key=str(row["id"]), event_id=body.event_id,
                            data={"request_id": str(row["id"]), "user_id": str(req.user_id), "kind": body.kind})
    return row


@router.get("/api/me/support", summary="Your support requests and their status")
async def my_support(req: ApiRequest) -> dict:
    return {"requests": await store.list_support_requests(req.core.db.pool, status=None, user_id=req.user_id,
                                                          limit=50)}
