"""Accounts: registration, login (with TOTP), token refresh and logout.

Guarantees:
- Passwords are hashed with argon2id off the event loop; unknown emails cost the same hash
  time and get the same `invalid_credentials` answer as a wrong password.
- A 2FA account gets `totp_required` only after its password was verified (so the answer
  does not reveal 2FA state to someone without the password); each TOTP time step is accepted
  at most once per user, enforced by a conditional UPDATE in PostgreSQL (RFC 6238 §5.2).
- Refresh tokens are random, stored as SHA-256 hashes, single-use and rotated; presenting a
  used token revokes its whole family (theft detection). Logout revokes the family.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp

from domain.crypto import FieldCipher, sha256
from domain.errors import FoyerError
from domain.identity import Principal
from domain.passwords import Passwords
from domain.services import Core
from storage import users

_TOTP_STEP_SECONDS = 30


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int = 0


class AccountService:
    def __init__(self, core: Core, *, passwords: Passwords, cipher: FieldCipher) -> None:
        self.core = core
        self.settings = core.settings.auth
        self.passwords = passwords
        self.cipher = cipher

    # --- registration and login -----------------------------------------------------------

    async def register(self, *, email: str, password: str, name: str) -> tuple[users.UserRow, TokenPair]:
        password_hash = await self.passwords.hash(password)
        async with self.core.db.transaction("register") as conn:
            user = await users.create_user(conn, email=email.strip(), name=name.strip(), password_hash=password_hash)
        return user, await self.issue_tokens(user)

    async def authenticate(self, *, email: str, password: str, totp_code: str | None) -> users.UserRow:
        """Check credentials (and the TOTP code for 2FA accounts); raise a FoyerError otherwise."""
        user = await users.get_by_email(self.core.db.pool, email.strip())
        if user is None:
            await self.passwords.dummy_verify(password)
            raise FoyerError("invalid_credentials", "email or password is wrong")
        if not await self.passwords.verify(user.password_hash, password):
            raise FoyerError("invalid_credentials", "email or password is wrong")
        if user.disabled_at is not None:
            raise FoyerError("account_disabled", "this account is disabled; contact support")
        if user.totp_enabled:
            if not totp_code:
                raise FoyerError("totp_required", "this account uses two-factor authentication: send totp_code")
            await self.check_totp(user, totp_code)
        if self.passwords.needs_rehash(user.password_hash):
            await users.update_password_hash(self.core.db.pool, user.id, await self.passwords.hash(password))
        return user

    async def login(self, *, email: str, password: str, totp_code: str | None) -> TokenPair:
        user = await self.authenticate(email=email, password=password, totp_code=totp_code)
        return await self.issue_tokens(user)

    # --- tokens -----------------------------------------------------------------------------

    async def issue_tokens(self, user: users.UserRow, *, family_id: uuid.UUID | None = None) -> TokenPair:
        family = family_id or uuid.uuid4()
        refresh = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.refresh_token_ttl_seconds)
        await users.insert_refresh_token(
            self.core.db.pool, user_id=user.id, family_id=family, token_hash=sha256(refresh), expires_at=expires
        )
        access = self.core.tokens.issue_access(Principal(user_id=user.id, role=user.role, session_id=family))
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=self.settings.access_token_ttl_seconds)

    async def refresh(self, refresh_token: str) -> TokenPair:
        async with self.core.db.transaction("refresh_token") as conn:
            row = await users.use_refresh_token(conn, sha256(refresh_token))
            if row is not None and row["reused"]:
                await users.revoke_family(conn, row["family_id"])
        if row is None or row["reused"]:
            # Raised after commit so the family revocation sticks.
            raise FoyerError("invalid_token", "refresh token is not valid; sign in again")
        user = await users.get_by_id(self.core.db.pool, row["user_id"])
        if user is None or user.disabled_at is not None:
            raise FoyerError("invalid_token", "refresh token is not valid; sign in again")
        return await self.issue_tokens(user, family_id=row["family_id"])

    async def logout(self, principal: Principal, refresh_token: str | None) -> None:
        """Revoke the caller's token family (this device); `all_devices` is a separate call."""
        if principal.session_id is not None:
            await users.revoke_family(self.core.db.pool, principal.session_id)
        if refresh_token:
            row = await self.core.db.fetchrow(
                "SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1", sha256(refresh_token)
            )
            if row is not None and row["user_id"] == principal.user_id:
                await users.revoke_family(self.core.db.pool, row["family_id"])

    async def logout_everywhere(self, principal: Principal) -> None:
        await users.revoke_all_for_user(self.core.db.pool, principal.user_id)

    # --- two-factor -------------------------------------------------------------------------

    async def totp_setup(self, principal: Principal) -> dict[str, str]:
        user = await self._user(principal)
        if user.totp_enabled:
            raise FoyerError("invalid_state", "two-factor authentication is already enabled")
        secret = pyotp.random_base32()
        await users.set_pending_totp_secret(self.core.db.pool, user.id, self.cipher.encrypt(secret))
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=self.settings.totp_issuer)
        return {"secret": secret, "otpauth_uri": uri}

    async def totp_enable(self, principal: Principal, code: str) -> None:
        user = await self._user(principal)
        if user.totp_enabled:
            raise FoyerError("invalid_state", "two-factor authentication is already enabled")
        if user.totp_secret_enc is None:
            raise FoyerError("invalid_state", "call /api/auth/2fa/setup first")
        await self.check_totp(user, code)
        async with self.core.db.transaction("enable_totp") as conn:
            await users.enable_totp(conn, user.id)

    async def check_totp(self, user: users.UserRow, code: str, *, now: float | None = None) -> None:
        """Accept `code` if it matches a step within the window that was never used before."""
        if user.totp_secret_enc is None:
            raise FoyerError("invalid_totp", "two-factor code is not valid")
        step = matching_step(self.cipher.decrypt(user.totp_secret_enc), code, window=self.settings.totp_valid_window,
                             now=now)
        if step is None or not await users.consume_totp_step(self.core.db.pool, user.id, step):
            raise FoyerError("invalid_totp", "two-factor code is not valid or was already used")

    async def _user(self, principal: Principal) -> users.UserRow:
        user = await users.get_by_id(self.core.db.pool, principal.user_id)
        if user is None or user.disabled_at is not None:
            raise FoyerError("invalid_token", "account no longer exists")
        return user

    async def me(self, principal: Principal) -> dict[str, Any]:
        user = await self._user(principal)
        return public_user(user, private=True)


def matching_step(secret: str, code: str, *, window: int, now: float | None = None) -> int | None:
    """The TOTP time step (Unix time // 30) within ±window whose code equals `code`, else None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int((now if now is not None else time.time()) // _TOTP_STEP_SECONDS)
    for offset in range(-window, window + 1):
        step = current + offset
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def public_user(user: users.UserRow, *, private: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"id": user.id, "name": user.name}
    if private:
        data.update(email=user.email, role=user.role, totp_enabled=user.totp_enabled, created_at=user.created_at)
    return data
