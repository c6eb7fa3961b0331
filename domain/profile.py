"""The signed-in user's own account: read it, change name/phone/email, change the password.

Guarantees:
- Only `name`, `phone` and `email` can be changed here (the handler rejects every other field;
  this module and `storage.users.update_profile` accept no others either).
- The phone number is stored encrypted (`FieldCipher`), normalised to E.164.
- Changing the email or the password needs the current password, checked under the per-user
  re-authentication throttle. A password change revokes every other refresh-token family (other
  devices must sign in again; their access JWTs expire within `access_token_ttl_seconds`).
- Email and password changes are audit-logged and announced as `account.security_changed`
  (`change` = `email.changed` with `old_email`, or `password.changed`) so a notice can go out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from domain.errors import FoyerError, field_error
from domain.identity import Principal
from domain.twofactor import record
from storage import users

if TYPE_CHECKING:
    from domain.accounts import AccountService

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PHONE_SEPARATORS = re.compile(r"[\s().\-]")


def normalize_phone(raw: str) -> str:
    """'+49 (30) 1234-5678' -> '+493012345678'; `validation_failed` unless it is E.164."""
    phone = _PHONE_SEPARATORS.sub("", raw.strip())
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not _E164.match(phone):
        raise field_error("phone", "expected an international number such as +4930123456")
    return phone


class ProfileService:
    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts
        self.core = accounts.core
        self.cipher = accounts.cipher

    async def me(self, principal: Principal) -> dict[str, Any]:
        user = await self.accounts.active_user(principal)
        return await self.private_view(user)

    async def private_view(self, user: users.UserRow) -> dict[str, Any]:
        remaining = (await self.accounts.twofactor.remaining_recovery_codes(user.id)) if user.totp_enabled else 0
        return {
            "id": user.id, "email": user.email, "name": user.name, "role": user.role,
            "phone": self.cipher.decrypt(user.phone_enc) if user.phone_enc is not None else None,
            "totp_enabled": user.totp_enabled, "recovery_codes_remaining": remaining,
            "created_at": user.created_at,
        }

    async def update(self, principal: Principal, changes: dict[str, Any], *,
                     current_password: str | None = None) -> dict[str, Any]:
        """Apply `changes` (keys among name, phone, email; phone None clears it)."""
        user = await self.accounts.active_user(principal)
        columns: dict[str, Any] = {}
        if "name" in changes:
            columns["name"] = changes["name"].strip()
            if not columns["name"]:
                raise field_error("name", "must not be blank")
        if "phone" in changes:
            phone = changes["phone"]
            columns["phone_enc"] = None if phone is None else self.cipher.encrypt(normalize_phone(phone))
        new_email = changes.get("email")
        if new_email is not None:
            new_email = new_email.strip()
            if new_email == user.email:
                new_email = None
        if new_email is not None:
            if not current_password:
                raise field_error("current_password", "required to change the email")
            await self._check_password(user, current_password)
            columns["email"] = new_email
        if not columns:
            return await self.private_view(user)
        async with self.core.db.transaction("update_profile") as conn:
            updated = await users.update_profile(conn, user.id, columns)
            if "email" in columns:
                await record(conn, user, "email.changed", details={"old_email": user.email})
        return await self.private_view(updated)

    async def change_password(self, principal: Principal, *, current_password: str, new_password: str) -> int:
        """Set a new password; revoke every other session. Returns the number of sessions revoked."""
        user = await self.accounts.active_user(principal)
        minimum = self.accounts.settings.password_min_length
        if len(new_password) < minimum:
            raise field_error("new_password", f"must be at least {minimum} characters")
        if new_password == current_password:
            raise field_error("new_password", "must differ from the current password")
        await self._check_password(user, current_password)
        new_hash = await self.accounts.passwords.hash(new_password)
        async with self.core.db.transaction("change_password") as conn:
            await users.update_password_hash(conn, user.id, new_hash)
            revoked = await users.revoke_all_for_user(conn, user.id, keep_family=principal.session_id)
            await record(conn, user, "password.changed", details={"other_sessions_revoked": len(revoked)})
        await self.core.sessions_revoked(revoked)
        return len(revoked)

    async def _check_password(self, user: users.UserRow, password: str) -> None:
        async with self.accounts.throttle.guard_reauth(user.id):
            if not await self.accounts.passwords.verify(user.password_hash, password):
                raise FoyerError("invalid_credentials", "the current password is wrong")
