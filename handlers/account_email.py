"""Password reset and email verification over HTTP (the emails are sent by the notify consumer)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from handlers.api import ApiRequest, Router
from handlers.devices import NOTIFY

router = Router("account-email", "Password reset and email verification links.")

Token = Annotated[str, msgspec.Meta(min_length=16, max_length=256)]


class ResetRequestBody(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=254)]


class ResetConfirmBody(msgspec.Struct, forbid_unknown_fields=True):
    token: Token
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class VerifyConfirmBody(msgspec.Struct, forbid_unknown_fields=True):
    token: Token


class Accepted(msgspec.Struct):
    accepted: bool


class VerificationOut(msgspec.Struct):
    email: str
    verified: bool
    sent: bool | None = None
    verified_at: datetime | None = None


@router.post("/api/auth/password-reset", summary="Email a password-reset link (always 202)", auth="none",
             status=202, body=ResetRequestBody, response=Accepted, errors=("rate_limited",))
async def request_password_reset(req: ApiRequest) -> dict:
    """The answer is the same whether or not the address has an account. Throttled per client IP
    (429) and per address (extra requests are accepted but send nothing)."""
    await req.app[NOTIFY].accounts.request_password_reset(email=req.body.email, client_ip=req.client_ip)
    return {"accepted": True}


@router.post("/api/auth/password-reset/confirm", summary="Set a new password with a reset link's token",
             auth="none", status=204, body=ResetConfirmBody, errors=("invalid_link",))
async def confirm_password_reset(req: ApiRequest) -> None:
    """The token works once and expires; success revokes every refresh token of the account."""
    await req.app[NOTIFY].accounts.confirm_password_reset(token=req.body.token, password=req.body.password)


@router.post("/api/auth/verify-email", summary="Email a link that confirms the caller's address", status=202,
             response=VerificationOut, errors=("rate_limited",))
async def request_verification(req: ApiRequest) -> dict:
    return await req.app[NOTIFY].accounts.request_verification(user_id=req.user_id, client_ip=req.client_ip)


@router.post("/api/auth/verify-email/confirm", summary="Confirm an address with a verification link's token",
             auth="none", body=VerifyConfirmBody, response=VerificationOut, errors=("invalid_link",))
async def confirm_verification(req: ApiRequest) -> dict:
    return await req.app[NOTIFY].accounts.confirm_verification(token=req.body.token)


@router.get("/api/me/email-verification", summary="Whether the caller's current address is verified",
            response=VerificationOut)
async def verification_status(req: ApiRequest) -> dict:
    return await req.app[NOTIFY].accounts.status(req.user_id)
