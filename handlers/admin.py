"""Admin-only HTTP: system health, relay streams and dead letters, user support, support requests.

Every route requires a global admin (`domain.policy.require_admin`: `forbidden` otherwise).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from domain import support
from domain.errors import not_found
from domain.policy import require_admin
from handlers.api import ApiRequest, Router
from storage import admin as store
from storage import outbox
from storage import relay as relay_store

router = Router("admin", "Global admins: system health, the relay, user support, support requests.")


@dataclass
class ReachState:
    """Per-app runtime of the reach component (a mutable holder: the app is frozen once started).

    Set up by server/components/reach.py; `relay` is the node's `server.relay.Relay` or None."""

    kind: str = "serve"  # "serve" or "worker" (set by server/worker.py)
    node_id: str = ""
    started_at: float = field(default_factory=time.time)
    relay: Any = None
    metrics: Any = None
    extra: dict = field(default_factory=dict)


REACH: web.AppKey[ReachState] = web.AppKey("foyer.reach", ReachState)

Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Note = Annotated[str, msgspec.Meta(max_length=2000)]


class UserQuery(msgspec.Struct, forbid_unknown_fields=True):
    q: Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50


class ReasonBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason


class SupportListQuery(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["open", "closed", "all"] = "open"
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100


class CloseBody(msgspec.Struct, forbid_unknown_fields=True):
    note: Note | None = None


class DeadLetterQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100


def _reach(req: ApiRequest) -> ReachState:
    return req.app[REACH]


def _kafka_check(req: ApiRequest):
    if not req.core.settings.kafka_bootstrap:
        return None
    from integrations.kafka import KafkaConfig, kafka_ping

    config = KafkaConfig.from_settings(req.core.settings)

    async def check() -> dict:
        topics = await kafka_ping(config)
        prefix = config.topic_prefix
        return {"topics": [t for t in topics if t.startswith(prefix)]}

    return check


@router.get("/api/admin/health", summary="System health: nodes alive, PostgreSQL, Redis, Kafka, outbox lag",
            errors=("unauthorized", "forbidden"))
async def admin_health(req: ApiRequest) -> dict:
    require_admin(req.principal)
    return await support.health(req.core, relay=_reach(req).relay, kafka_check=_kafka_check(req))


@router.get("/api/admin/relay", summary="Relay streams (cursor, owner, lag) and recent dead letters",
            query=DeadLetterQuery, errors=("unauthorized", "forbidden"))
async def admin_relay(req: ApiRequest) -> dict:
    require_admin(req.principal)
    names = await relay_store.stream_names(req.core.db.pool)
    return {"streams": await relay_store.stream_lags(req.core.db.pool, names),
            "dead_letters": await relay_store.list_dead_letters(req.core.db.pool, limit=req.query.limit)}


@router.post("/api/admin/relay/dead-letters/{consumer}/{event_id}/retry",
             summary="Hand a dead-lettered event back to its consumer (on this node)",
             errors=("unauthorized", "forbidden", "not_found", "unavailable"))
async def admin_retry_dead_letter(req: ApiRequest) -> dict:
    require_admin(req.principal)
    return await support.retry_dead_letter(req.core, _reach(req).relay, req.params["consumer"],
                                           req.params["event_id"])


@router.get("/api/admin/users", summary="Find users by email or name", query=UserQuery,
            errors=("unauthorized", "forbidden"))
async def admin_find_users(req: ApiRequest) -> dict:
    require_admin(req.principal)
    return {"users": await store.find_users(req.core.db.pool, req.query.q.strip(), limit=req.query.limit)}


@router.get("/api/admin/users/{id}", summary="One user: account state, audit trail, support requests",
            errors=("unauthorized", "forbidden", "not_found"))
async def admin_user(req: ApiRequest) -> dict:
    require_admin(req.principal)
    return await support.user_detail(req.core, req.params["id"])


@router.post("/api/admin/users/{id}/reset-2fa",
             summary="Turn off a user's two-factor auth (lost device); audited, signs the user out",
             body=ReasonBody, errors=("unauthorized", "forbidden", "not_found", "invalid_state"))
async def admin_reset_2fa(req: ApiRequest) -> dict:
    principal = require_admin(req.principal)
    return await support.reset_2fa(req.core, principal, req.params["id"], reason=req.body.reason)


@router.post("/api/admin/users/{id}/disable", summary="Disable an account: no login, no refresh; audited",
             body=ReasonBody, errors=("unauthorized", "forbidden", "not_found", "invalid_state"))
async def admin_disable_user(req: ApiRequest) -> dict:
    principal = require_admin(req.principal)
    return await support.set_disabled(req.core, principal, req.params["id"], disabled=True, reason=req.body.reason)


@router.post("/api/admin/users/{id}/enable", summary="Enable a disabled account; audited",
             body=ReasonBody, errors=("unauthorized", "forbidden", "not_found"))
async def admin_enable_user(req: ApiRequest) -> dict:
    principal = require_admin(req.principal)
    return await support.set_disabled(req.core, principal, req.params["id"], disabled=False, reason=req.body.reason)


@router.get("/api/admin/support", summary="Support and feedback requests sent by users", query=SupportListQuery,
            errors=("unauthorized", "forbidden"))
async def admin_support_list(req: ApiRequest) -> dict:
    require_admin(req.principal)
    status = None if req.query.status == "all" else req.query.status
    return {"requests": await store.list_support_requests(req.core.db.pool, status=status, limit=req.query.limit)}


@router.post("/api/admin/support/{id}/close", summary="Close a support request (idempotent)", body=CloseBody,
             errors=("unauthorized", "forbidden", "not_found"))
async def admin_support_close(req: ApiRequest) -> dict:
    principal = require_admin(req.principal)
    request_id: uuid.UUID = req.params["id"]
    async with req.core.db.transaction("support_close") as conn:
        result = await store.close_support_request(conn, request_id, by=principal.user_id, note=req.body.note)
        if result is None:
            raise not_found("support request")
        row, closed_now = result
        if closed_now:
            await outbox.append(conn, type="support.request_closed", key=str(request_id), data={
                "request_id": str(request_id), "user_id": str(row["user_id"]) if row["user_id"] else None,
                "kind": row["kind"], "by": str(principal.user_id)})
    return row
