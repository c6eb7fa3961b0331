"""Generic HTTP idempotency: the first response to (scope, principal, Idempotency-Key) is replayed.

Semantics (every mutating route may opt in, `Router.route(..., idempotency="scope")`):
- a repeat with the same key and the same request (method, path, body: the *fingerprint*) gets
  the first response back, status and body byte for byte;
- the same key with a different request is `422 idempotency_key_reused`;
- a repeat while the first is still running is `409 idempotency_in_progress`;
- only successful (2xx) responses are kept: a failed request changed nothing, so its retry runs
  again; records live `ttl` seconds (24 h by default, like Stripe).

Two ways to use it:
- `run_once(db, ...)` around a handler (the generic route option): claims the key in its own
  short transaction, runs the handler, stores its 2xx response. If the node dies between the
  handler's commit and the store, a retry runs the handler again: at-least-once, so handlers
  using only this must be naturally idempotent or tolerate it.
- `record(conn, ...)` inside the handler's own transaction (orders do this, in bulk, in
  `storage.orders.place_batch`): then the response exists if and only if the effect does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.errors import FoyerError
from storage.db import Database

DEFAULT_TTL_SECONDS = 86_400
IN_PROGRESS_LOCK_SECONDS = 60.0  # a claim older than this belongs to a dead request: taken over


def fingerprint(*parts: bytes | str) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.digest()


def valid_key(key: str | None) -> str | None:
    """None if absent; the key if printable ASCII of 1..255 chars; else `validation_failed`."""
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise FoyerError("validation_failed", "bad Idempotency-Key header",
                         details=[{"field": "Idempotency-Key", "message": "1-255 printable ASCII characters"}])
    return key


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    body: bytes


def reused() -> FoyerError:
    return FoyerError("idempotency_key_reused", "this Idempotency-Key was used for a different request")


def in_progress() -> FoyerError:
    return FoyerError("idempotency_in_progress", "a request with this Idempotency-Key is still being processed",
                      details={"retry_after": 1}, headers={"Retry-After": "1"})


async def lookup(conn: Any, scope: str, principal: str, key: str, fp: bytes) -> Stored | None:
    """The stored response for this key, or None if there is none; raises reused/in_progress."""
    row = await conn.fetchrow(
        """SELECT fingerprint, state, status_code, response, locked_until < now() AS stale FROM idempotency_keys
            WHERE scope = $1 AND principal = $2 AND key = $3 AND expires_at > now()""", scope, principal, key)
    if row is None:
        return None
    if bytes(row["fingerprint"]) != fp:
        raise reused()
    if row["state"] == "in_progress":
        if row["stale"]:
            return None
        raise in_progress()
    return Stored(row["status_code"], bytes(row["response"]))


async def record(conn: asyncpg.Connection, *, scope: str, principal: str, key: str, fp: bytes, status: int,
                 body: bytes, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> bool:
    """Store a final response inside the caller's transaction; False if the key already exists."""
    row = await conn.fetchrow(
        """INSERT INTO idempotency_keys (scope, principal, key, fingerprint, state, status_code, response, expires_at)
           VALUES ($1, $2, $3, $4, 'done', $5, $6, now() + make_interval(secs => $7))
           ON CONFLICT DO NOTHING RETURNING 1""", scope, principal, key, fp, status, body, float(ttl_seconds))
    return row is not None


async def _claim(db: Database, scope: str, principal: str, key: str, fp: bytes, ttl: int) -> Stored | None:
    """Claim the key for a new run (None), or return/raise what an earlier run left."""
    async with db.transaction("idempotency.claim") as conn:
        await conn.execute("DELETE FROM idempotency_keys WHERE scope = $1 AND principal = $2 AND key = $3 "
                           "AND expires_at <= now()", scope, principal, key)
        row = await conn.fetchrow(
            """INSERT INTO idempotency_keys (scope, principal, key, fingerprint, state, locked_until, expires_at)
               VALUES ($1, $2, $3, $4, 'in_progress', now() + make_interval(secs => $5),
                       now() + make_interval(secs => $6))
               ON CONFLICT DO NOTHING RETURNING 1""",
            scope, principal, key, fp, IN_PROGRESS_LOCK_SECONDS, float(ttl))
        if row is not None:
            return None
        stored = await lookup(conn, scope, principal, key, fp)
        if stored is not None:
            return stored
        # A stale in-progress claim (its request died): take it over.
        taken = await conn.fetchrow(
            """UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => $4)
                WHERE scope = $1 AND principal = $2 AND key = $3 AND state = 'in_progress' AND locked_until < now()
                RETURNING 1""", scope, principal, key, IN_PROGRESS_LOCK_SECONDS)
        if taken is None:
            raise in_progress()
        return None


async def run_once(db: Database, *, scope: str, principal: str, key: str, fp: bytes,
                   call: Callable[[], Awaitable[tuple[int, bytes]]], ttl: int = DEFAULT_TTL_SECONDS) -> Stored:
    """Run `call` at most once per key (see module doc) and return its (status, body)."""
    stored = await _claim(db, scope, principal, key, fp, ttl)
    if stored is not None:
        return stored
    try:
        status, body = await call()
    except BaseException:
        await db.execute("DELETE FROM idempotency_keys WHERE scope = $1 AND principal = $2 AND key = $3 "
                         "AND state = 'in_progress'", scope, principal, key)
        raise
    if 200 <= status < 300:
        await db.execute(
            """UPDATE idempotency_keys SET state = 'done', status_code = $4, response = $5, locked_until = NULL
                WHERE scope = $1 AND principal = $2 AND key = $3""", scope, principal, key, status, body)
    else:
        await db.execute("DELETE FROM idempotency_keys WHERE scope = $1 AND principal = $2 AND key = $3",
                         scope, principal, key)
    return Stored(status, body)


async def purge_expired(db: Database, limit: int = 5000) -> int:
    result = await db.execute(
        """DELETE FROM idempotency_keys WHERE ctid IN (
             SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT $1)""", limit)
    return int(result.split()[-1])
