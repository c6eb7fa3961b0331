"""Two-factor authentication: TOTP (RFC 6238) and one-time recovery codes.

Guarantees:
- The TOTP secret is encrypted at rest (`FieldCipher`); it is shown once, by `setup`.
- Each TOTP time step is accepted at most once per user, on any node: a conditional UPDATE
  of `users.last_totp_step` (RFC 6238 §5.2). Codes of steps older than the last used one are
  refused too, so an observed code cannot be replayed inside the ±window.
- Enabling 2FA returns `recovery_code_count` recovery codes, once. Each has ~79 bits of
  entropy, is stored only as a SHA-256 hash (salted with the user id) and is accepted once:
  a conditional UPDATE of `recovery_codes.used_at`, so two nodes racing with the same code
  cannot both succeed. Regenerating (which needs a valid TOTP code) replaces all of them.
- Enabling is conditional on the verified pending secret, so two concurrent enables cannot
  both succeed (and hand out two sets of recovery codes).
- Signed-in re-checks (regenerate, disable) are throttled per user (`guard_reauth`).
- Every change is audit-logged (`security_audit`) and announced as an outbox fact
  `account.security_changed` for notices to the user.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import pyotp

from domain.errors import FoyerError
from domain.identity import Principal
from storage import outbox, users

if TYPE_CHECKING:
    from domain.accounts import AccountService

TOTP_STEP_SECONDS = 30
# No 0/1/i/l/o: unambiguous when read from paper. 31 symbols × 16 ≈ 79 bits per code.
_CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
_CODE_LENGTH = 16


def matching_step(secret: str, code: str, *, window: int, now: float | None = None) -> int | None:
    """The TOTP time step (Unix time // 30) within ±window whose code equals `code`, else None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int((now if now is not None else time.time()) // TOTP_STEP_SECONDS)
    for offset in range(-window, window + 1):
        step = current + offset
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, _CODE_LENGTH, 4))


def normalize_recovery_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def recovery_code_hash(user_id: uuid.UUID, code: str) -> bytes:
    """SHA-256 over the user id and the normalised code: fast is fine, the codes are random."""
    return hashlib.sha256(user_id.bytes + b":" + normalize_recovery_code(code).encode()).digest()


async def record(conn: asyncpg.Connection, user: users.UserRow, action: str, *, actor: str = "self",
                 details: dict[str, Any] | None = None) -> None:
    """Audit row plus the outbox fact `account.security_changed` {user_id, change, ...details}."""
    await users.audit(conn, user_id=user.id, actor=actor, action=action, details=details)
    await outbox.append(conn, type="account.security_changed", key=str(user.id),
                        data={"user_id": str(user.id), "change": action, **(details or {})})


class TwoFactorService:
    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts
        self.core = accounts.core
        self.settings = accounts.settings
        self.cipher = accounts.cipher

    # --- setup, enable, disable ----------------------------------------------------------------

    async def setup(self, principal: Principal) -> dict[str, str]:
        """A new pending secret (replacing any earlier pending one) and its otpauth:// URI."""
        user = await self.accounts.active_user(principal)
        if user.totp_enabled:
            raise FoyerError("invalid_state", "two-factor authentication is already enabled")
        secret = pyotp.random_base32()
        await users.set_pending_totp_secret(self.core.db.pool, user.id, self.cipher.encrypt(secret))
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=self.settings.totp_issuer)
        return {"secret": secret, "otpauth_uri": uri}

    async def enable(self, principal: Principal, code: str) -> list[str]:
        """Turn 2FA on with a code from the pending secret; returns the recovery codes (shown once)."""
        user = await self.accounts.active_user(principal)
        if user.totp_enabled:
            raise FoyerError("invalid_state", "two-factor authentication is already enabled")
        if user.totp_secret_enc is None:
            raise FoyerError("invalid_state", "call /api/auth/2fa/setup first")
        await self.check_totp(user, code)
        codes = [new_recovery_code() for _ in range(self.settings.recovery_code_count)]
        async with self.core.db.transaction("enable_totp") as conn:
            if not await users.enable_totp(conn, user.id, user.totp_secret_enc):
                raise FoyerError("invalid_state", "two-factor setup changed meanwhile; start again")
            await users.replace_recovery_codes(conn, user.id, [recovery_code_hash(user.id, c) for c in codes])
            await record(conn, user, "2fa.enabled")
        return codes

    async def regenerate_recovery_codes(self, principal: Principal, code: str) -> list[str]:
        """Replace every recovery code (used or not) after a valid TOTP code."""
        user = await self.accounts.active_user(principal)
        if not user.totp_enabled:
            raise FoyerError("invalid_state", "two-factor authentication is not enabled")
        async with self.accounts.throttle.guard_reauth(user.id):
            await self.check_totp(user, code)
        codes = [new_recovery_code() for _ in range(self.settings.recovery_code_count)]
        async with self.core.db.transaction("regenerate_recovery_codes") as conn:
            current = await self.accounts.active_user(principal, conn, for_update=True)
            if not current.totp_enabled:
                raise FoyerError("invalid_state", "two-factor authentication is not enabled")
            await users.replace_recovery_codes(conn, user.id, [recovery_code_hash(user.id, c) for c in codes])
            await record(conn, user, "2fa.recovery_codes_regenerated")
        return codes

    async def disable(self, principal: Principal, *, password: str, totp_code: str | None,
                      recovery_code: str | None) -> None:
        """Turn 2FA off: needs the password and a TOTP or recovery code. Forgets secret and codes."""
        user = await self.accounts.active_user(principal)
        if not user.totp_enabled:
            raise FoyerError("invalid_state", "two-factor authentication is not enabled")
        async with self.accounts.throttle.guard_reauth(user.id):
            if not await self.accounts.passwords.verify(user.password_hash, password):
                raise FoyerError("invalid_credentials", "the password is wrong")
            await self.verify_login_factor(user, totp_code=totp_code, recovery_code=recovery_code,
                                           announce=False)
        async with self.core.db.transaction("disable_totp") as conn:
            if not await users.disable_totp(conn, user.id):
                raise FoyerError("invalid_state", "two-factor authentication is not enabled")
            await record(conn, user, "2fa.disabled")

    # --- verification -----------------------------------------------------------------------

    async def verify_login_factor(self, user: users.UserRow, *, totp_code: str | None,
                                  recovery_code: str | None, announce: bool = True) -> None:
        """Accept a fresh TOTP code or an unused recovery code; else `totp_required`/`invalid_totp`."""
        if recovery_code:
            await self.use_recovery_code(user, recovery_code, announce=announce)
        elif totp_code:
            await self.check_totp(user, totp_code)
        else:
            raise FoyerError(
                "totp_required",
                "this account uses two-factor authentication: send totp_code (or a recovery_code)",
            )

    async def check_totp(self, user: users.UserRow, code: str, *, now: float | None = None) -> None:
        """Accept `code` if it matches a step within the window newer than every used step."""
        if user.totp_secret_enc is None:
            raise FoyerError("invalid_totp", "two-factor code is not valid")
        secret = self.cipher.decrypt(user.totp_secret_enc)
        step = matching_step(secret, code, window=self.settings.totp_valid_window, now=now)
        if step is None or not await users.consume_totp_step(self.core.db.pool, user.id, step):
            raise FoyerError("invalid_totp", "two-factor code is not valid or was already used")

    async def use_recovery_code(self, user: users.UserRow, code: str, *, announce: bool = True) -> None:
        """Spend one recovery code (exactly once, whatever the concurrency) or raise `invalid_totp`."""
        code_hash = recovery_code_hash(user.id, code)
        async with self.core.db.transaction("use_recovery_code") as conn:
            if not await users.consume_recovery_code(conn, user.id, code_hash):
                raise FoyerError("invalid_totp", "recovery code is not valid or was already used")
            if announce:
                remaining = await users.count_recovery_codes(conn, user.id)
                await record(conn, user, "2fa.recovery_code_used", details={"remaining": remaining})

    async def remaining_recovery_codes(self, user_id: uuid.UUID) -> int:
        return await users.count_recovery_codes(self.core.db.pool, user_id)
