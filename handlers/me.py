"""The signed-in user's own account: `GET /api/me` and `PATCH /api/me`."""

from __future__ import annotations

from typing import Annotated

import msgspec

from handlers.api import ApiRequest, Router
from handlers.auth import ACCOUNTS, Email, Name, Password, UserOut

router = Router("me", "The signed-in user's own account.")

Phone = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class ProfilePatch(msgspec.Struct, forbid_unknown_fields=True):
    """Only these fields can be changed; anything else (`role`, `id`, `totp_enabled`, ...) is
    `validation_failed`. `phone: null` clears the phone number; `email` needs `current_password`."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | None | msgspec.UnsetType = msgspec.UNSET
    email: Email | msgspec.UnsetType = msgspec.UNSET
    current_password: Password | msgspec.UnsetType = msgspec.UNSET


@router.get("/api/me", summary="The signed-in user", response=UserOut)
async def me(req: ApiRequest) -> dict:
    """Includes the decrypted phone number and how many recovery codes are left."""
    assert req.principal is not None
    return await req.app[ACCOUNTS].profile.me(req.principal)


@router.patch("/api/me", summary="Change your name, phone number or email", body=ProfilePatch, response=UserOut,
              errors=("validation_failed", "invalid_credentials", "email_taken", "rate_limited"))
async def update_me(req: ApiRequest) -> dict:
    """The phone number is stored encrypted (E.164). Changing the email needs `current_password`."""
    assert req.principal is not None
    body: ProfilePatch = req.body
    changes = {
        name: value for name in ("name", "phone", "email")
        if (value := getattr(body, name)) is not msgspec.UNSET
    }
    password = body.current_password if body.current_password is not msgspec.UNSET else None
    return await req.app[ACCOUNTS].profile.update(req.principal, changes, current_password=password)
