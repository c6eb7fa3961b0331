"""Users, refresh tokens, recovery codes and the security audit log in PostgreSQL.

Guarantees enforced here (in SQL, so they hold across nodes):
- a TOTP time step is accepted at most once per user (`consume_totp_step`);
- a recovery code is accepted at most once (`consume_recovery_code`);
- a refresh token is used at most once, and never after any token of its family was revoked
  (`use_refresh_token`), even when revocation and rotation race;
- 2FA is enabled at most once per setup secret (`enable_totp` is conditional).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from domain.errors import FoyerError

Conn = asyncpg.Connection | asyncpg.Pool


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
    phone_enc: bytes | None = None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> UserRow:
        return cls(
            id=r["id"], email=r["email"], name=r["name"], password_hash=r["password_hash"], role=r["role"],
            totp_enabled=r["totp_enabled"], totp_secret_enc=r["totp_secret_enc"],
            last_totp_step=r["last_totp_step"], disabled_at=r["disabled_at"], created_at=r["created_at"],
            phone_enc=r["phone_enc"],
        )


_USER_COLUMNS = (
    "id, email, name, password_hash, role, totp_enabled, totp_secret_enc, last_totp_step, disabled_at, "
    "created_at, phone_enc"
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


async def get_by_email(conn: Conn, email: str) -> UserRow | None:
    row = await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE lower(email) = lower($1)", email)
    return UserRow.from_record(row) if row else None


async def get_by_id(conn: Conn, user_id: uuid.UUID, *, for_update: bool = False) -> UserRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1{lock}", user_id)
    return UserRow.from_record(row) if row else None


async def update_password_hash(conn: Conn, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, password_hash)


async def update_profile(conn: Conn, user_id: uuid.UUID, changes: dict[str, Any]) -> UserRow:
    """Set the given columns (only `name`, `phone_enc` and `email` may be changed this way)."""
    allowed = ("name", "phone_enc", "email")
    unknown = set(changes) - set(allowed)
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    columns = [c for c in allowed if c in changes]
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
    try:
        row = await conn.fetchrow(
            f"UPDATE users SET {sets}, updated_at = now() WHERE id = $1 RETURNING {_USER_COLUMNS}",
            user_id, *(changes[c] for c in columns),
        )
    except asyncpg.UniqueViolationError:
        raise FoyerError("email_taken", "an account with this email already exists") from None
    if row is None:
        raise FoyerError("invalid_token", "account no longer exists")
    return UserRow.from_record(row)


async def set_role(conn: asyncpg.Connection, email: str, role: str) -> tuple[UserRow, str] | None:
    """Set the global role of the account with `email`; returns (user, previous role) or None."""
    row = await conn.fetchrow(
        f"""UPDATE users u SET role = $2, updated_at = now()
              FROM (SELECT id, role AS old_role FROM users WHERE lower(email) = lower($1) FOR UPDATE) o
             WHERE u.id = o.id
         RETURNING o.old_role, {', '.join('u.' + c.strip() for c in _USER_COLUMNS.split(','))}""",
        email, role,
    )
    return (UserRow.from_record(row), row["old_role"]) if row else None


async def list_by_role(conn: Conn, role: str) -> list[UserRow]:
    rows = await conn.fetch(f"SELECT {_USER_COLUMNS} FROM users WHERE role = $1 ORDER BY lower(email)", role)
    return [UserRow.from_record(r) for r in rows]


# --- two-factor -------------------------------------------------------------------------------

async def set_pending_totp_secret(conn: Conn, user_id: uuid.UUID, secret_enc: bytes) -> None:
    """Store a new, not yet enabled secret. Refused (no change) while 2FA is enabled."""
    status = await conn.execute(
        "UPDATE users SET totp_secret_enc = $2, updated_at = now() WHERE id = $1 AND NOT totp_enabled",
        user_id, secret_enc,
    )
    if status.endswith(" 0"):
        raise FoyerError("invalid_state", "two-factor authentication is already enabled")


async def consume_totp_step(conn: Conn, user_id: uuid.UUID, step: int) -> bool:
    """Record `step` as used if it is newer than the last used one; False means a replayed code.

    One conditional UPDATE, so two nodes racing on the same code cannot both accept it (RFC 6238 §5.2).
    """
    status = await conn.execute(
        """UPDATE users SET last_totp_step = $2
            WHERE id = $1 AND (last_totp_step IS NULL OR last_totp_step < $2)""",
        user_id, step,
    )
    return status == "UPDATE 1"


async def enable_totp(conn: asyncpg.Connection, user_id: uuid.UUID, secret_enc: bytes) -> bool:
    """Turn 2FA on if it is off and the pending secret is still `secret_enc` (the one verified)."""
    status = await conn.execute(
        """UPDATE users SET totp_enabled = true, updated_at = now()
            WHERE id = $1 AND NOT totp_enabled AND totp_secret_enc = $2""",
        user_id, secret_enc,
    )
    return status == "UPDATE 1"


async def disable_totp(conn: asyncpg.Connection, user_id: uuid.UUID) -> bool:
    """Turn 2FA off, forget the secret and every recovery code. False if it was not on."""
    status = await conn.execute(
        """UPDATE users SET totp_enabled = false, totp_secret_enc = NULL, last_totp_step = NULL,
                  updated_at = now()
            WHERE id = $1 AND totp_enabled""",
        user_id,
    )
    await conn.execute("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
    return status == "UPDATE 1"


async def replace_recovery_codes(conn: asyncpg.Connection, user_id: uuid.UUID, code_hashes: list[bytes]) -> None:
    """Delete every recovery code of the user (used or not) and store the new hashes."""
    await conn.execute("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
    await conn.executemany(
        "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)", [(user_id, h) for h in code_hashes]
    )


async def consume_recovery_code(conn: Conn, user_id: uuid.UUID, code_hash: bytes) -> bool:
    """Mark an unused code used; True exactly once per code, whatever the concurrency.

    Two racing UPDATEs on the same row serialise on its row lock; the second re-checks
    `used_at IS NULL` after the first commits and matches nothing.
    """
    status = await conn.execute(
        "UPDATE recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        user_id, code_hash,
    )
    return status == "UPDATE 1"


async def count_recovery_codes(conn: Conn, user_id: uuid.UUID) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL", user_id
    )


# --- refresh tokens ---------------------------------------------------------------------------

async def insert_refresh_token(
    conn: Conn, *, user_id: uuid.UUID, family_id: uuid.UUID, token_hash: bytes, expires_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
        user_id, family_id, token_hash, expires_at,
    )


async def use_refresh_token(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """Mark a refresh token used and return it, or return the row with `reused=true`.

    Returns None for unknown tokens. A token that was already used, revoked or expired, or whose
    family has any revoked token, comes back with `reused = true` so the caller can revoke the
    whole family (token theft detection). The family check makes revocation stick even for a
    token inserted by a rotation that raced with the revocation. Call inside the transaction
    that also inserts the successor token, so a concurrent reuse (which waits for this row's
    lock) revokes the successor too.
    """
    row = await conn.fetchrow(
        """UPDATE refresh_tokens t SET used_at = now()
            WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > now()
              AND NOT EXISTS (SELECT 1 FROM refresh_tokens r
                               WHERE r.family_id = t.family_id AND r.revoked_at IS NOT NULL)
        RETURNING t.user_id, t.family_id, false AS reused""",
        token_hash,
    )
    if row is not None:
        return row
    return await conn.fetchrow(
        "SELECT user_id, family_id, true AS reused FROM refresh_tokens WHERE token_hash = $1", token_hash
    )


async def find_refresh_token(conn: Conn, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1", token_hash)


async def revoke_family(conn: Conn, family_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL", family_id
    )


async def revoke_all_for_user(conn: Conn, user_id: uuid.UUID, *,
                              keep_family: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Revoke every refresh-token family of the user except `keep_family`; returns the families
    (sessions) revoked, for `Core.sessions_revoked` after the transaction commits."""
    rows = await conn.fetch(
        """UPDATE refresh_tokens SET revoked_at = now()
            WHERE user_id = $1 AND revoked_at IS NULL AND family_id IS DISTINCT FROM $2
        RETURNING family_id""",
        user_id, keep_family,
    )
    return sorted({r["family_id"] for r in rows})


async def delete_expired_refresh_tokens(conn: Conn, *, grace_seconds: int, limit: int = 5000) -> int:
    """Delete whole families whose newest token expired more than `grace_seconds` ago.

    Whole families only: deleting a family's revoked rows while keeping a live one would
    un-revoke it (see `use_refresh_token`).
    """
    status = await conn.execute(
        """DELETE FROM refresh_tokens WHERE family_id IN (
               SELECT family_id FROM refresh_tokens GROUP BY family_id
               HAVING max(expires_at) < now() - make_interval(secs => $1) LIMIT $2)""",
        grace_seconds, limit,
    )
    return int(status.split()[-1])


# --- security audit -------------------------------------------------------------------------

async def audit(
    conn: asyncpg.Connection, *, user_id: uuid.UUID | None, actor: str, action: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append a row to `security_audit` (append-only; never updated or deleted by the app)."""
    await conn.execute(
        "INSERT INTO security_audit (user_id, actor, action, details) VALUES ($1, $2, $3, $4)",
        user_id, actor, action, details or {},
    )


async def audit_log(conn: Conn, user_id: uuid.UUID, *, limit: int = 100) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, user_id, actor, action, details, created_at FROM security_audit
            WHERE user_id = $1 ORDER BY id DESC LIMIT $2""",
        user_id, limit,
    )
