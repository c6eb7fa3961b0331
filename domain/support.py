"""Admin operations: system health, user support (2FA reset, disable/enable) and support requests.

Guarantees:
- Callers are global admins (`domain.policy.require_admin`, checked by the handlers first).
- Every change to an account is one transaction with a `security_audit` row (actor
  `admin:<admin user id>`) and an `account.security_changed` outbox fact (`domain.twofactor.record`).
- Disabling an account revokes all its refresh tokens in the same transaction: it cannot log in
  or refresh; access tokens already issued expire within `access_token_ttl_seconds`.
- Resetting 2FA forgets the secret and recovery codes and signs the account out everywhere.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

from domain.errors import FoyerError, not_found
from domain.identity import Principal
from domain.services import Core
from domain.twofactor import record
from storage import admin as store
from storage import relay as relay_store
from storage import users
from storage.outbox import OutboxEvent


def actor(principal: Principal) -> str:
    return f"admin:{principal.user_id}"


async def _timed(check: Any, timeout: float = 2.0) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout)
    except Exception as exc:  # a failing dependency is reported, not raised
        return {"ok": False, "error": type(exc).__name__, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    out: dict[str, Any] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if isinstance(detail, dict):
        out.update(detail)
    return out


async def health(core: Core, *, relay: Any, kafka_check: Any | None) -> dict[str, Any]:
    """Nodes alive (Redis registry), PostgreSQL/Redis/Kafka status, outbox lag and relay streams."""
    interval = core.settings.reach.node_heartbeat_seconds

    async def pg() -> dict[str, Any]:
        return {"version": await core.db.fetchval("SHOW server_version")}

    async def rd() -> None:
        await core.redis.ping()

    postgres, redis = await asyncio.gather(_timed(pg), _timed(rd))
    if kafka_check is None:
        kafka: dict[str, Any] = {"configured": False}
    else:
        kafka = {"configured": True, **await _timed(kafka_check, 4.0)}
    try:
        nodes = await store.alive_nodes(core.redis, core.keys, ttl=interval * 3)
    except Exception as exc:
        nodes = [{"error": type(exc).__name__}]
    lag = await relay_store.outbox_lag(core.db.pool)
    names = [r["name"] for r in await core.db.fetch("SELECT name FROM relay_streams ORDER BY name")]
    streams = await relay_store.stream_lags(core.db.pool, names)
    dead = await core.db.fetchval("SELECT count(*) FROM relay_dead_letters WHERE retried_at IS NULL")
    ok = postgres["ok"] and redis["ok"] and (kafka.get("ok", True))
    return {
        "status": "ok" if ok else "degraded",
        "checked_by": core.node_id,
        "nodes": nodes,
        "postgres": postgres,
        "redis": redis,
        "kafka": kafka,
        "outbox": {"pending": lag.pending, "oldest_pending_seconds": round(lag.oldest_pending_seconds, 3),
                   "newest_seq": lag.newest_seq, "dead_letters": dead,
                   "relay_on_this_node": relay is not None},
        "streams": [{"name": s["name"], "position": s["last_seq"], "owner": s["owner"],
                     "lease_until": s["lease_until"], "behind": s["behind"], "attempts": s["attempts"],
                     "last_error": s["last_error"], "delivered": s["delivered"]} for s in streams],
    }


async def _target(conn: Any, user_id: uuid.UUID) -> users.UserRow:
    user = await users.get_by_id(conn, user_id, for_update=True)
    if user is None:
        raise not_found("user")
    return user


async def reset_2fa(core: Core, principal: Principal, user_id: uuid.UUID, *, reason: str) -> dict[str, Any]:
    async with core.db.transaction("admin_reset_2fa") as conn:
        user = await _target(conn, user_id)
        if not user.totp_enabled and user.totp_secret_enc is None:
            raise FoyerError("invalid_state", "two-factor authentication is not enabled for this account")
        await users.disable_totp(conn, user.id)
        await conn.execute("UPDATE users SET totp_secret_enc = NULL WHERE id = $1", user.id)
        sessions = await users.revoke_all_for_user(conn, user.id)
        await record(conn, user, "admin.2fa_reset", actor=actor(principal),
                     details={"reason": reason, "sessions_revoked": len(sessions)})
        view = await store.user_view(conn, user.id)
    await core.sessions_revoked(sessions)
    assert view is not None
    return view


async def set_disabled(core: Core, principal: Principal, user_id: uuid.UUID, *, disabled: bool,
                       reason: str) -> dict[str, Any]:
    if disabled and user_id == principal.user_id:
        raise FoyerError("invalid_state", "you cannot disable your own account")
    sessions: list[uuid.UUID] = []
    async with core.db.transaction("admin_disable_account" if disabled else "admin_enable_account") as conn:
        user = await _target(conn, user_id)
        if await store.set_disabled(conn, user.id, disabled):
            details: dict[str, Any] = {"reason": reason}
            if disabled:
                sessions = await users.revoke_all_for_user(conn, user.id)
                details["sessions_revoked"] = len(sessions)
            await record(conn, user, "admin.account_disabled" if disabled else "admin.account_enabled",
                         actor=actor(principal), details=details)
        view = await store.user_view(conn, user.id)
    await core.sessions_revoked(sessions)
    assert view is not None
    return view


async def user_detail(core: Core, user_id: uuid.UUID) -> dict[str, Any]:
    view = await store.user_view(core.db.pool, user_id)
    if view is None:
        raise not_found("user")
    audit = await users.audit_log(core.db.pool, user_id, limit=50)
    view["audit"] = [{"id": a["id"], "actor": a["actor"], "action": a["action"], "details": a["details"],
                      "created_at": a["created_at"]} for a in audit]
    view["support_requests"] = await store.list_support_requests(core.db.pool, status=None, user_id=user_id,
                                                                 limit=20)
    return view


async def retry_dead_letter(core: Core, relay: Any, consumer_name: str, event_id: uuid.UUID) -> dict[str, Any]:
    """Hand a dead-lettered event back to its consumer, on this node. Raises unless it succeeds."""
    envelope = await relay_store.dead_letter_envelope(core.db.pool, consumer_name, event_id)
    if envelope is None:
        raise not_found("dead letter")
    consumer = None
    if relay is not None:
        consumer = next((s.consumer for s in relay.streams if s.name == consumer_name), None)
    if consumer is None:
        raise FoyerError("unavailable", "that consumer does not run on this node (or is the kafka stream)")
    row = await core.db.fetchrow("SELECT seq FROM relay_dead_letters WHERE consumer = $1 AND event_id = $2",
                                 consumer_name, event_id)
    event = OutboxEvent(
        seq=row["seq"], id=uuid.UUID(envelope["id"]), type=envelope["type"], version=envelope["version"],
        event_id=uuid.UUID(envelope["event_id"]) if envelope.get("event_id") else None,
        key=envelope.get("event_id") or envelope["id"], data=envelope["data"],
        occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
    )
    try:
        await consumer.handle(event)
    except Exception as exc:
        raise FoyerError("unavailable", f"the consumer failed again: {type(exc).__name__}") from exc
    await relay_store.mark_dead_letter_retried(core.db.pool, consumer_name, event_id)
    await core.db.execute(
        "INSERT INTO relay_deliveries (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        consumer_name, event_id,
    )
    return {"consumer": consumer_name, "event_id": event_id, "retried": True}
