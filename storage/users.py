"""Users, refresh tokens and recovery codes in PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from domain.errors import FoyerError


@dataclass(frozen=True, slots=True)
class UserRow:
    id: uuid.UUID
    email: str
    name: str
    password_hash: str
    role: str
    totp_enabled: bool
    totp_secret_enc: bytes | None
    last_totp_step: int | None
    disabled_at: datetime | None
    created_at: datetime

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> UserRow:
        return cls(
            id=r["id"], email=r["email"], name=r["name"], password_hash=r["password_hash"], role=r["role"],
            totp_enabled=r["totp_enabled"], totp_secret_enc=r["totp_secret_enc"],
            last_totp_step=r["last_totp_step"], disabled_at=r["disabled_at"], created_at=r["created_at"],
        )


_USER_COLUMNS = (
    "id, email, name, password_hash, role, totp_enabled, totp_secret_enc, last_totp_step, disabled_at, created_at"
)


async def create_user(conn: asyncpg.Connection, *, email: str, name: str, password_hash: str) -> UserRow:
    try:
        row = await conn.fetchrow(
            f"INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) RETURNING {_USER_COLUMNS}",
            email, name, password_hash,
        )
    except asyncpg.UniqueViolationError:
        raise FoyerError("email_taken", "an account with this email already exists") from None
    return UserRow.from_record(row)


async def get_by_email(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> UserRow | None:
    row = await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE lower(email) = lower($1)", email)
    return UserRow.from_record(row) if row else None


async def get_by_id(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> UserRow | None:
    row = await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id)
    return UserRow.from_record(row) if row else None


async def update_password_hash(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, password_hash)


async def set_pending_totp_secret(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, secret_enc: bytes) -> None:
    """Store a new, not yet enabled secret. Refused (no change) while 2FA is enabled."""
    status = await conn.execute(
        "UPDATE users SET totp_secret_enc = $2, updated_at = now() WHERE id = $1 AND NOT totp_enabled",
        user_id, secret_enc,
    )
    if status.endswith(" 0"):
        raise FoyerError("invalid_state", "two-factor authentication is already enabled")


async def consume_totp_step(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, step: int) -> bool:
    """Record `step` as used if it is newer than the last used one; False means a replayed code.

    One conditional UPDATE, so two nodes racing on the same code cannot both accept it (RFC 6238 §5.2).
    """
    status = await conn.execute(
        """UPDATE users SET last_totp_step = $2
            WHERE id = $1 AND (last_totp_step IS NULL OR last_totp_step < $2)""",
        user_id, step,
    )
    return status == "UPDATE 1"


async def enable_totp(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    await conn.execute("UPDATE users SET totp_enabled = true, updated_at = now() WHERE id = $1", user_id)


# --- refresh tokens ---------------------------------------------------------------------------

async def insert_refresh_token(
    conn: asyncpg.Connection | asyncpg.Pool, *, user_id: uuid.UUID, family_id: uuid.UUID, token_hash: bytes,
    expires_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
        user_id, family_id, token_hash, expires_at,
    )


async def use_refresh_token(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """Mark a refresh token used and return it, or return the row with `reused=true`.

    Returns None for unknown tokens. A token that was already used or revoked comes back with
    `reused = true` so the caller can revoke the whole family (token theft detection).
    """
    row = await conn.fetchrow(
        """UPDATE refresh_tokens SET used_at = now()
            WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
        RETURNING user_id, family_id, false AS reused""",
        token_hash,
    )
    if row is not None:
        return row
    return await conn.fetchrow(
        "SELECT user_id, family_id, true AS reused FROM refresh_tokens WHERE token_hash = $1", token_hash
    )


async def revoke_family(conn: asyncpg.Connection | asyncpg.Pool, family_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL", family_id
    )


async def revoke_all_for_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", user_id
    )
