"""Accounts: registration, login (with a second factor and throttling), token refresh and logout.

Guarantees:
- Passwords are hashed with argon2id off the event loop; unknown emails cost the same hash
  time and get the same `invalid_credentials` answer as a wrong password.
- Login attempts are throttled per account and per client IP before any password is checked
  (`domain.throttle`); unknown emails are throttled exactly like known ones.
- A 2FA account gets `totp_required` only after its password was verified (so the answer
  does not reveal 2FA state to someone without the password); each TOTP time step and each
  recovery code is accepted at most once, enforced in PostgreSQL (`domain.twofactor`).
- Refresh tokens are random, stored as SHA-256 hashes, single-use and rotated. Rotation (use
  the old token, insert its successor) is one transaction; presenting a used or revoked token
  revokes its whole family (theft detection), including a successor issued concurrently.
  Logout revokes the family; "all devices" revokes every family of the user.
- Access JWTs live `access_token_ttl_seconds` (15 min by default); a revoked session's access
  tokens are refused before that on every node (`Core.sessions_revoked`, storage/revocations.py).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from domain.crypto import FieldCipher, sha256
from domain.errors import FoyerError
from domain.identity import Principal
from domain.passwords import Passwords
from domain.services import Core
from domain.throttle import LoginThrottle
from storage import users
from storage.ratelimit import RateLimiter


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int = 0


class AccountService:
    """Entry point of the accounts area; `twofactor` and `profile` hold the rest of its operations."""

    def __init__(self, core: Core, *, passwords: Passwords, cipher: FieldCipher) -> None:
        from domain.profile import ProfileService
        from domain.twofactor import TwoFactorService

        self.core = core
        self.settings = core.settings.auth
        self.passwords = passwords
        self.cipher = cipher
        self._throttle: LoginThrottle | None = None
        self.twofactor = TwoFactorService(self)
        self.profile = ProfileService(self)

    @property
    def throttle(self) -> LoginThrottle:
        """Built on first use: the Redis client exists only once the node has started."""
        if self._throttle is None:
            self._throttle = LoginThrottle(RateLimiter(self.core.redis), self.core.keys, self.settings)
        return self._throttle

    # --- registration and login -----------------------------------------------------------

    async def register(self, *, email: str, password: str, name: str,
                       client_ip: str | None = None) -> tuple[users.UserRow, TokenPair]:
        """Create an account and its first session; `client_ip` given: limited per IP first."""
        await self.throttle.check_registration(client_ip)
        password_hash = await self.passwords.hash(password)
        async with self.core.db.transaction("register") as conn:
            user = await users.create_user(conn, email=email.strip(), name=name.strip(), password_hash=password_hash)
        return user, await self.issue_tokens(user)

    async def authenticate(self, *, email: str, password: str, totp_code: str | None,
                           recovery_code: str | None = None) -> users.UserRow:
        """Check credentials and, for 2FA accounts, the second factor; raise a FoyerError otherwise.

        Not throttled by itself: `login` wraps it in the login throttle.
        """
        user = await users.get_by_email(self.core.db.pool, email.strip())
        if user is None:
            await self.passwords.dummy_verify(password)
            raise FoyerError("invalid_credentials", "email or password is wrong")
        if not await self.passwords.verify(user.password_hash, password):
            raise FoyerError("invalid_credentials", "email or password is wrong")
        if user.disabled_at is not None:
            raise FoyerError("account_disabled", "this account is disabled; contact support")
        if user.totp_enabled:
            await self.twofactor.verify_login_factor(user, totp_code=totp_code, recovery_code=recovery_code)
        if self.passwords.needs_rehash(user.password_hash):
            await users.update_password_hash(self.core.db.pool, user.id, await self.passwords.hash(password))
        return user

    async def login(self, *, email: str, password: str, totp_code: str | None = None,
                    recovery_code: str | None = None, client_ip: str | None = None) -> TokenPair:
        """Throttled sign-in: `rate_limited` before any check once a window is full."""
        async with self.throttle.login_attempt(email=email, ip=client_ip):
            user = await self.authenticate(email=email, password=password, totp_code=totp_code,
                                           recovery_code=recovery_code)
        return await self.issue_tokens(user)

    # --- tokens -----------------------------------------------------------------------------

    async def issue_tokens(self, user: users.UserRow, *, family_id: uuid.UUID | None = None,
                           conn: asyncpg.Connection | None = None) -> TokenPair:
        """A new access JWT plus a refresh token in `family_id` (a new family: a new session)."""
        family = family_id or uuid.uuid4()
        refresh = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.refresh_token_ttl_seconds)
        await users.insert_refresh_token(
            conn if conn is not None else self.core.db.pool,
            user_id=user.id, family_id=family, token_hash=sha256(refresh), expires_at=expires,
        )
        access = self.core.tokens.issue_access(Principal(user_id=user.id, role=user.role, session_id=family))
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=self.settings.access_token_ttl_seconds)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: exactly one of any number of concurrent uses of one token succeeds."""
        pair: TokenPair | None = None
        async with self.core.db.transaction("refresh_token") as conn:
            row = await users.use_refresh_token(conn, sha256(refresh_token))
            stolen = row is not None and row["reused"]
            if stolen:
                await users.revoke_family(conn, row["family_id"])
            elif row is not None:
                user = await users.get_by_id(conn, row["user_id"])
                if user is not None and user.disabled_at is None:
                    pair = await self.issue_tokens(user, family_id=row["family_id"], conn=conn)
        if stolen:  # theft detected: the thief's access tokens stop working too
            await self.core.sessions_revoked([row["family_id"]])
        if pair is None:
            # Raised after commit so the family revocation sticks.
            raise FoyerError("invalid_token", "refresh token is not valid; sign in again")
        return pair

    async def logout(self, principal: Principal, refresh_token: str | None) -> None:
        """Revoke the caller's token family (this device); `all_devices` is a separate call."""
        sessions = [principal.session_id]
        if principal.session_id is not None:
            await users.revoke_family(self.core.db.pool, principal.session_id)
        if refresh_token:
            row = await users.find_refresh_token(self.core.db.pool, sha256(refresh_token))
            if row is not None and row["user_id"] == principal.user_id:
                await users.revoke_family(self.core.db.pool, row["family_id"])
                sessions.append(row["family_id"])
        await self.core.sessions_revoked(sessions)

    async def logout_everywhere(self, principal: Principal) -> None:
        await self.core.sessions_revoked(await users.revoke_all_for_user(self.core.db.pool, principal.user_id))

    # --- helpers for the other account services ----------------------------------------------

    async def active_user(self, principal: Principal, conn: asyncpg.Connection | None = None,
                          *, for_update: bool = False) -> users.UserRow:
        user = await users.get_by_id(conn if conn is not None else self.core.db.pool, principal.user_id,
                                     for_update=for_update)
        if user is None or user.disabled_at is not None:
            raise FoyerError("invalid_token", "account no longer exists")
        return user

    async def me(self, principal: Principal) -> dict:
        """Kept for callers of the first version; see `ProfileService.me`."""
        return await self.profile.me(principal)


def public_user(user: users.UserRow, *, private: bool = False) -> dict:
    """The public view (id, name); `private=True` adds what only the user themself may see."""
    data: dict = {"id": user.id, "name": user.name}
    if private:
        data.update(email=user.email, role=user.role, totp_enabled=user.totp_enabled, created_at=user.created_at)
    return data
