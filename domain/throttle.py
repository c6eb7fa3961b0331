"""Throttling of password and second-factor guessing, per account and per client IP.

Every sign-in attempt first *reserves* a slot in two sliding windows (storage.ratelimit): one per
account and one per client IP. A refused reservation answers `rate_limited` (with
`details.retry_after` and a `Retry-After` header) before any password is checked, so it costs
no argon2 time. What happens to the reservation depends on the outcome:

- wrong password, unknown email, wrong TOTP/recovery code: it stays (a counted failure);
- success: the account's window is reset and the IP's slot is released;
- correct password but a missing second factor (`totp_required`) or a disabled account, or an
  internal error: the slot is released in both windows (not a guess).

Reserving before checking (instead of counting failures afterwards) means N concurrent attempts
on any number of nodes cannot exceed the limit: in-flight attempts occupy slots.

No account enumeration: the account window is keyed by the normalised email, whether or not an
account exists, and the answer (`rate_limited`, same message) does not say which window
refused. The key holds a SHA-256 of the email, not the address.

Sign-ups are limited per client IP (`check_registration`): each costs an argon2 hash.

Signed-in actions that re-check the password or a second factor (change password or email,
disable 2FA, regenerate recovery codes) use a per-user window (`guard_reauth`) with the same
limit, so a stolen access token cannot be used to guess the password or TOTP codes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from config.auth import AuthSettings
from domain.errors import FoyerError, rate_limited
from storage.ratelimit import Limit, RateLimiter
from storage.redis import Keyspace

# Outcomes (error codes) after which the password was right: not a guess, release the slot.
_NOT_A_GUESS = frozenset({"totp_required", "account_disabled", "unavailable", "busy", "internal_error"})
LOGIN_THROTTLED_MESSAGE = "too many failed sign-in attempts; try again later"


def email_key(email: str) -> str:
    """The account part of a throttle key: a hash of the normalised email (no PII in Redis)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Attempt:
    token: str
    account: Limit
    ip: Limit | None


class LoginThrottle:
    def __init__(self, limiter: RateLimiter, keys: Keyspace, settings: AuthSettings) -> None:
        self.limiter = limiter
        self.keys = keys
        self.settings = settings

    def account_limit(self, email: str) -> Limit:
        return Limit(self.keys("rl", "login", "account", email_key(email)),
                     self.settings.login_max_failures_per_account, self.settings.login_window_seconds)

    def ip_limit(self, ip: str) -> Limit:
        return Limit(self.keys("rl", "login", "ip", ip), self.settings.login_max_failures_per_ip,
                     self.settings.login_window_seconds)

    def reauth_limit(self, user_id: uuid.UUID) -> Limit:
        return Limit(self.keys("rl", "reauth", user_id), self.settings.login_max_failures_per_account,
                     self.settings.login_window_seconds)

    async def begin(self, *, email: str, ip: str | None) -> Attempt:
        """Reserve a slot in both windows or raise `rate_limited` (nothing reserved then)."""
        account = self.account_limit(email)
        ip_limit = self.ip_limit(ip) if ip else None
        limits = (account, ip_limit) if ip_limit else (account,)
        decision = await self.limiter.acquire(*limits)
        if not decision.allowed:
            raise rate_limited(decision.retry_after, LOGIN_THROTTLED_MESSAGE)
        return Attempt(token=decision.token, account=account, ip=ip_limit)

    async def succeeded(self, attempt: Attempt) -> None:
        await self.limiter.reset(attempt.account.key)
        if attempt.ip is not None:
            await self.limiter.release(attempt.token, attempt.ip.key)

    async def not_a_guess(self, attempt: Attempt) -> None:
        keys = [attempt.account.key] + ([attempt.ip.key] if attempt.ip else [])
        await self.limiter.release(attempt.token, *keys)

    @asynccontextmanager
    async def login_attempt(self, *, email: str, ip: str | None) -> AsyncIterator[Attempt]:
        """Reserve, run the block, then settle the reservation by the block's outcome."""
        attempt = await self.begin(email=email, ip=ip)
        try:
            yield attempt
        except FoyerError as exc:
            if exc.code in _NOT_A_GUESS:
                await self.not_a_guess(attempt)
            raise
        except BaseException:
            await self.not_a_guess(attempt)
            raise
        await self.succeeded(attempt)

    async def check_registration(self, ip: str | None) -> None:
        """Count one sign-up for `ip`, or raise `rate_limited` (no limit when disabled or no IP)."""
        if not ip or self.settings.register_max_per_ip == 0:
            return
        limit = Limit(self.keys("rl", "register", "ip", ip), self.settings.register_max_per_ip,
                      self.settings.register_window_seconds)
        decision = await self.limiter.acquire(limit)
        if not decision.allowed:
            raise rate_limited(decision.retry_after, "too many sign-ups from your network; try again later")

    @asynccontextmanager
    async def guard_reauth(self, user_id: uuid.UUID) -> AsyncIterator[None]:
        """For signed-in re-checks of a password or code: failures count, successes are released."""
        limit = self.reauth_limit(user_id)
        decision = await self.limiter.acquire(limit)
        if not decision.allowed:
            raise rate_limited(decision.retry_after, "too many failed attempts; try again later")
        try:
            yield
        except FoyerError as exc:
            if exc.code not in ("invalid_credentials", "invalid_totp"):
                await self.limiter.release(decision.token, limit.key)
            raise
        except BaseException:
            await self.limiter.release(decision.token, limit.key)
            raise
        await self.limiter.release(decision.token, limit.key)
