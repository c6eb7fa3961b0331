"""Password reset and email verification.

Flow: the HTTP request writes an outbox fact carrying only the user id
(`account.password_reset_requested` / `account.email_verification_requested`); the email
consumer queues the email; when the email worker sends it, it creates the one-time token, stores
its hash (bound to the request = outbox event id) and mails the link. So no raw token is ever in
an outbox row, a queue row, Kafka or a log.

Guarantees:
- `request_password_reset` answers the same way whether or not the address has an account (no
  enumeration); per-IP throttling answers `rate_limited`, per-address throttling silently drops.
- A reset token is single-use, expires after `password_reset_ttl_seconds`, and a successful reset
  voids the user's other reset tokens and revokes all their refresh tokens (every device signs in
  again), in one transaction with the new password hash.
- A verification token proves the address it was sent to; it is refused once the account's email
  changed since.
"""

from __future__ import annotations

import secrets
import uuid
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

from domain.crypto import sha256
from domain.errors import FoyerError, field_error, rate_limited
from domain.notify.email import EmailService
from domain.passwords import Passwords
from domain.services import Core
from storage import account_tokens as tokens_store
from storage import notify as store
from storage import outbox, users
from storage.notify import ClaimedEmail, EmailRow
from storage.outbox import OutboxEvent

RESET_REQUESTED = "account.password_reset_requested"
VERIFY_REQUESTED = "account.email_verification_requested"
PASSWORD_CHANGED = "account.password_reset_completed"
EMAIL_VERIFIED = "account.email_verified"
USER_REGISTERED = "user.registered"

_HOUR = 3600


def invalid_link() -> FoyerError:
    return FoyerError("invalid_link", "this link is invalid, has expired or was already used")


class AccountEmails:
    def __init__(self, core: Core, email: EmailService, passwords: Passwords) -> None:
        self.core = core
        self.email = email
        self.passwords = passwords
        self.settings = core.settings.notify
        email.register("account", self.build)

    # --- requests (HTTP) --------------------------------------------------------------------

    async def _throttle(self, *, client_ip: str, address: str) -> bool:
        """Raise `rate_limited` per IP; return False when this address had enough emails this hour."""
        redis, keys = self.core.redis, self.core.keys
        if await store.hit_counter(redis, keys("notify", "acctmail", "ip", client_ip), window_seconds=_HOUR) > \
                self.settings.account_email_per_ip_per_hour:
            raise rate_limited(_HOUR / 4, "too many requests from this address; try again later")
        per_address = await store.hit_counter(
            redis, keys("notify", "acctmail", "to", sha256(address.strip().lower()).hex()), window_seconds=_HOUR)
        return per_address <= self.settings.account_email_per_address_per_hour

    async def request_password_reset(self, *, email: str, client_ip: str) -> None:
        if not await self._throttle(client_ip=client_ip, address=email):
            return
        user = await users.get_by_email(self.core.db.pool, email.strip())
        if user is None or user.disabled_at is not None:
            return
        async with self.core.db.transaction("request_password_reset") as conn:
            await outbox.append(conn, type=RESET_REQUESTED, data={"user_id": str(user.id)}, key=str(user.id))

    async def request_verification(self, *, user_id: uuid.UUID, client_ip: str) -> dict[str, Any]:
        user = await users.get_by_id(self.core.db.pool, user_id)
        if user is None:
            raise FoyerError("invalid_token", "account no longer exists")
        current = await tokens_store.verification(self.core.db.pool, user_id)
        if current is not None and current["email"].lower() == user.email.lower():
            return {"email": user.email, "verified": True, "sent": False}
        sent = await self._throttle(client_ip=client_ip, address=user.email)
        if sent:
            async with self.core.db.transaction("request_email_verification") as conn:
                await outbox.append(conn, type=VERIFY_REQUESTED, data={"user_id": str(user.id)}, key=str(user.id))
        return {"email": user.email, "verified": False, "sent": sent}

    # --- confirmations (HTTP) ---------------------------------------------------------------

    async def confirm_password_reset(self, *, token: str, password: str) -> None:
        minimum = self.core.settings.auth.password_min_length
        if len(password) < minimum:
            raise field_error("password", f"must be at least {minimum} characters")
        password_hash = await self.passwords.hash(password)  # before the transaction: argon2 is slow
        async with self.core.db.transaction("confirm_password_reset") as conn:
            row = await tokens_store.consume_token(conn, token_hash=sha256(token), purpose="password_reset")
            if row is None:
                raise invalid_link()
            user_id = row["user_id"]
            await users.update_password_hash(conn, user_id, password_hash)
            signed_out = await users.revoke_all_for_user(conn, user_id)
            await tokens_store.void_tokens(conn, user_id=user_id, purpose="password_reset")
            user = await users.get_by_id(conn, user_id)
            if user is not None and user.email.lower() == row["email"].lower():
                await tokens_store.mark_verified(conn, user_id=user_id, email=user.email)  # the link proved it
            await outbox.append(conn, type=PASSWORD_CHANGED, data={"user_id": str(user_id)}, key=str(user_id))
        await self.core.sessions_revoked(signed_out)

    async def confirm_verification(self, *, token: str) -> dict[str, Any]:
        async with self.core.db.transaction("confirm_email_verification") as conn:
            row = await tokens_store.consume_token(conn, token_hash=sha256(token), purpose="email_verification")
            if row is None:
                raise invalid_link()
            user = await users.get_by_id(conn, row["user_id"])
            if user is None or user.email.lower() != row["email"].lower():
                raise invalid_link()
            verified_at = await tokens_store.mark_verified(conn, user_id=user.id, email=user.email)
            await outbox.append(conn, type=EMAIL_VERIFIED, data={"user_id": str(user.id)}, key=str(user.id))
        return {"email": user.email, "verified": True, "verified_at": verified_at}

    async def status(self, user_id: uuid.UUID) -> dict[str, Any]:
        user = await users.get_by_id(self.core.db.pool, user_id)
        if user is None:
            raise FoyerError("invalid_token", "account no longer exists")
        row = await tokens_store.verification(self.core.db.pool, user_id)
        verified = row is not None and row["email"].lower() == user.email.lower()
        return {"email": user.email, "verified": verified, "verified_at": row["verified_at"] if verified else None}

    # --- the email consumer side ----------------------------------------------------------

    async def handle(self, event: OutboxEvent) -> None:
        """Queue the reset or verification email of one outbox event (once per event)."""
        purpose = "password_reset" if event.type == RESET_REQUESTED else "email_verification"
        try:
            user_id = uuid.UUID(str(event.data.get("user_id")))
        except ValueError:
            return
        await self.email.enqueue([EmailRow(
            dedupe_key=f"{event.id}:{purpose}", kind=purpose, user_id=user_id,
            spec={"builder": "account", "purpose": purpose, "user_id": str(user_id), "request_id": str(event.id)})])

    async def build(self, item: ClaimedEmail) -> EmailMessage | None:
        """At send time: a fresh one-time token (replacing this request's unused one) and the email."""
        purpose = item.spec["purpose"]
        user = await users.get_by_id(self.core.db.pool, uuid.UUID(item.spec["user_id"]))
        if user is None or user.disabled_at is not None:
            return None
        if purpose == "email_verification":
            done = await tokens_store.verification(self.core.db.pool, user.id)
            if done is not None and done["email"].lower() == user.email.lower():
                return None
        raw = secrets.token_urlsafe(32)
        ttl = (self.settings.password_reset_ttl_seconds if purpose == "password_reset"
               else self.settings.email_verification_ttl_seconds)
        if not await tokens_store.store_token(self.core.db.pool, token_hash=sha256(raw), user_id=user.id,
                                              purpose=purpose, email=user.email,
                                              request_id=uuid.UUID(item.spec["request_id"]), ttl_seconds=ttl):
            return None  # this request's link was already used
        base = (self.settings.app_url or self.core.settings.base_url).rstrip("/")
        path = "reset-password" if purpose == "password_reset" else "verify-email"
        context = {"name": user.name, "email": user.email, "site_name": site_name(self.settings.email_from),
                   "link": f"{base}/{path}#token={raw}", "valid_minutes": ttl // 60, "valid_hours": ttl // 3600}
        template = "password_reset" if purpose == "password_reset" else "verify_email"
        # A fresh token gets a fresh Message-ID, so a client never collapses it into an older copy.
        return self.email.composer.build(name=template, context=context, to_addr=user.email, to_name=user.name,
                                         dedupe_key=f"{item.dedupe_key}:{sha256(raw).hex()[:8]}", kind=purpose)


def site_name(email_from: str) -> str:
    name, _ = parseaddr(email_from)
    return name or "Foyer"
