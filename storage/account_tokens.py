"""One-time account tokens (password reset, email verification), verified addresses, calendar feeds.

Only SHA-256 hashes of tokens are stored. Guarantees:
- `store_token` keeps one token per request (the outbox event that asked for it): building the
  email again replaces that request's unused token, never a used one.
- `consume_token` is a single conditional UPDATE: a token is accepted at most once, before its
  expiry, for its purpose, even when two requests race on two nodes.
- A calendar feed token maps to one user; rotating replaces it, deleting revokes it at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg


async def store_token(conn: asyncpg.Connection | asyncpg.Pool, *, token_hash: bytes, user_id: uuid.UUID,
                      purpose: str, email: str, request_id: uuid.UUID, ttl_seconds: int) -> bool:
    """Store (or replace, if unused) the token of `request_id`; False if that request's token was used."""
    row = await conn.fetchrow(
        """INSERT INTO account_tokens (token_hash, user_id, purpose, email, request_id, expires_at)
           VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
           ON CONFLICT (request_id) DO UPDATE
              SET token_hash = EXCLUDED.token_hash, expires_at = EXCLUDED.expires_at, created_at = now()
            WHERE account_tokens.used_at IS NULL
        RETURNING 1""",
        token_hash, user_id, purpose, email, request_id, ttl_seconds,
    )
    return row is not None


async def consume_token(conn: asyncpg.Connection, *, token_hash: bytes, purpose: str) -> asyncpg.Record | None:
    """Mark a live token used; returns (user_id, email) or None when unknown/expired/used/other purpose."""
    return await conn.fetchrow(
        """UPDATE account_tokens SET used_at = now()
            WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
        RETURNING user_id, email""",
        token_hash, purpose,
    )


async def void_tokens(conn: asyncpg.Connection, *, user_id: uuid.UUID, purpose: str) -> None:
    """Invalidate every unused token of a purpose for the user (after a successful reset)."""
    await conn.execute(
        "UPDATE account_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        user_id, purpose,
    )


async def purge_expired(conn: asyncpg.Connection | asyncpg.Pool, *, older_than_days: int = 7) -> int:
    status = await conn.execute(
        "DELETE FROM account_tokens WHERE expires_at < now() - make_interval(days => $1)", older_than_days
    )
    return int(status.split()[-1])


# --- verified addresses ----------------------------------------------------------------------

async def mark_verified(conn: asyncpg.Connection | asyncpg.Pool, *, user_id: uuid.UUID, email: str) -> datetime:
    return await conn.fetchval(
        """INSERT INTO email_verifications (user_id, email) VALUES ($1, $2)
           ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, verified_at = now()
        RETURNING verified_at""",
        user_id, email,
    )


async def verification(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT email, verified_at FROM email_verifications WHERE user_id = $1", user_id)


# --- calendar feeds --------------------------------------------------------------------------

async def set_feed_token(conn: asyncpg.Connection | asyncpg.Pool, *, user_id: uuid.UUID, token_hash: bytes) -> datetime:
    """Create or rotate the user's feed token (the old URL stops working at once)."""
    return await conn.fetchval(
        """INSERT INTO calendar_feeds (user_id, token_hash) VALUES ($1, $2)
           ON CONFLICT (user_id) DO UPDATE SET token_hash = EXCLUDED.token_hash, created_at = now(),
                                               last_fetched_at = NULL
        RETURNING created_at""",
        user_id, token_hash,
    )


async def feed_user(conn: asyncpg.Connection | asyncpg.Pool, token_hash: bytes) -> uuid.UUID | None:
    return await conn.fetchval(
        "UPDATE calendar_feeds SET last_fetched_at = now() WHERE token_hash = $1 RETURNING user_id", token_hash
    )


async def feed_info(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT created_at, last_fetched_at FROM calendar_feeds WHERE user_id = $1", user_id)


async def delete_feed(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> bool:
    return (await conn.execute("DELETE FROM calendar_feeds WHERE user_id = $1", user_id)) == "DELETE 1"
