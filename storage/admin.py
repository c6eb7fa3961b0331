"""Admin data: the node registry (Redis), user support queries and the admin audit trail (PostgreSQL).

Node registry: every node and worker refreshes `nodes` (a sorted set scored by last heartbeat,
Unix seconds) and `node:<id>` (its description, with a TTL) every `node_heartbeat_seconds`.
A node is alive while its last heartbeat is younger than three intervals; a stopping node
removes itself. Redis keys only through `Keyspace`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from storage.redis import Keyspace


async def heartbeat(redis: aioredis.Redis, keys: Keyspace, node_id: str, info: dict[str, Any], *, ttl: float) -> None:
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(keys("nodes"), {node_id: now})
        pipe.set(keys("node", node_id), orjson.dumps({**info, "heartbeat_at": now}), px=int(ttl * 1000))
        pipe.zremrangebyscore(keys("nodes"), "-inf", now - max(ttl * 20, 3600))
        await pipe.execute()


async def remove_node(redis: aioredis.Redis, keys: Keyspace, node_id: str) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(keys("nodes"), node_id)
        pipe.delete(keys("node", node_id))
        await pipe.execute()


async def alive_nodes(redis: aioredis.Redis, keys: Keyspace, *, ttl: float) -> list[dict[str, Any]]:
    """Nodes whose last heartbeat is younger than `ttl` seconds, with their descriptions."""
    ids = await redis.zrangebyscore(keys("nodes"), time.time() - ttl, "+inf")
    if not ids:
        return []
    names = [i.decode() if isinstance(i, bytes) else i for i in ids]
    raw = await redis.mget([keys("node", n) for n in names])
    nodes = []
    for name, value in zip(names, raw, strict=True):
        if value is not None:
            nodes.append({"node_id": name, **orjson.loads(value)})
    return sorted(nodes, key=lambda n: n["node_id"])


# --- user support (PostgreSQL) ---------------------------------------------------------------------

Conn = asyncpg.Connection | asyncpg.Pool

_USER_VIEW = """u.id, u.email, u.name, u.role, u.totp_enabled, u.disabled_at, u.created_at,
    (SELECT count(*) FROM refresh_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL
        AND t.used_at IS NULL AND t.expires_at > now()) AS active_sessions"""


async def find_users(conn: Conn, query: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """Users whose email or name contains `query` (case-insensitive); exact email matches first."""
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await conn.fetch(
        f"""SELECT {_USER_VIEW} FROM users u
             WHERE u.email ILIKE $1 OR u.name ILIKE $1
             ORDER BY (lower(u.email) = lower($2)) DESC, u.created_at DESC LIMIT $3""",
        pattern, query, limit,
    )
    return [dict(r) for r in rows]


async def user_view(conn: Conn, user_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {_USER_VIEW} FROM users u WHERE u.id = $1", user_id)
    return dict(row) if row else None


async def set_disabled(conn: asyncpg.Connection, user_id: uuid.UUID, disabled: bool) -> bool:
    """Disable or enable an account; False when it already was in that state."""
    status = await conn.execute(
        """UPDATE users SET disabled_at = CASE WHEN $2 THEN now() ELSE NULL END, updated_at = now()
            WHERE id = $1 AND (disabled_at IS NOT NULL) <> $2""",
        user_id, disabled,
    )
    return status == "UPDATE 1"


async def create_support_request(
    conn: Conn, *, user_id: uuid.UUID, kind: str, subject: str, body: str, event_id: uuid.UUID | None,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        """INSERT INTO support_requests (user_id, kind, subject, body, event_id) VALUES ($1, $2, $3, $4, $5)
           RETURNING id, user_id, kind, subject, body, event_id, status, created_at, closed_at, closed_by, close_note""",
        user_id, kind, subject, body, event_id,
    )
    return dict(row)


async def list_support_requests(
    conn: Conn, *, status: str | None, user_id: uuid.UUID | None = None, limit: int = 100,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT r.id, r.user_id, u.email AS user_email, u.name AS user_name, r.kind, r.subject, r.body, r.event_id,
                  r.status, r.created_at, r.closed_at, r.closed_by, r.close_note
             FROM support_requests r LEFT JOIN users u ON u.id = r.user_id
            WHERE ($1::text IS NULL OR r.status = $1) AND ($2::uuid IS NULL OR r.user_id = $2)
            ORDER BY r.created_at DESC LIMIT $3""",
        status, user_id, limit,
    )
    return [dict(r) for r in rows]


async def close_support_request(
    conn: asyncpg.Connection, request_id: uuid.UUID, *, by: uuid.UUID, note: str | None,
) -> tuple[dict[str, Any], bool] | None:
    """Close a request; None if it does not exist, else (row, whether this call closed it).

    Closing a closed request changes nothing (the first closer's note and time stay)."""
    status = await conn.fetchval("SELECT status FROM support_requests WHERE id = $1 FOR UPDATE", request_id)
    if status is None:
        return None
    row = await conn.fetchrow(
        """UPDATE support_requests SET status = 'closed', closed_at = coalesce(closed_at, now()),
                  closed_by = coalesce(closed_by, $2), close_note = coalesce(close_note, $3)
            WHERE id = $1
        RETURNING id, user_id, kind, subject, body, event_id, status, created_at, closed_at, closed_by, close_note""",
        request_id, by, note,
    )
    return dict(row), status == "open"


async def try_round(redis: aioredis.Redis, key: str, *, seconds: float) -> bool:
    """True for exactly one caller per `seconds` window across nodes (SET NX PX)."""
    return bool(await redis.set(key, b"1", nx=True, px=max(1, int(seconds * 1000))))


async def event_exists(conn: Any, event_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM events WHERE id = $1", event_id))
