"""Accounts over HTTP: register, login, refresh, logout, password change, two-factor auth."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from aiohttp import web

from domain.accounts import AccountService, public_user
from domain.errors import field_error, validation_failed
from handlers.api import ApiRequest, Router

router = Router("auth", "Accounts, tokens and two-factor authentication.")
ACCOUNTS: web.AppKey[AccountService] = web.AppKey("foyer.accounts", AccountService)

Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$", max_length=254)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
TotpCode = Annotated[str, msgspec.Meta(min_length=6, max_length=16)]
RecoveryCode = Annotated[str, msgspec.Meta(min_length=8, max_length=64)]


class RegisterBody(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Password
    totp_code: TotpCode | None = None
    recovery_code: RecoveryCode | None = None


class RefreshBody(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class LogoutBody(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    all_devices: bool = False


class TotpEnableBody(msgspec.Struct, forbid_unknown_fields=True):
    code: TotpCode


class TotpDisableBody(msgspec.Struct, forbid_unknown_fields=True):
    password: Password
    code: TotpCode | None = None
    recovery_code: RecoveryCode | None = None


class PasswordChangeBody(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: Password


class UserOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    email: str | None = None
    role: str | None = None
    phone: str | None = None
    totp_enabled: bool | None = None
    recovery_codes_remaining: int | None = None
    created_at: datetime | None = None


class TokensOut(msgspec.Struct):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class RegisterOut(msgspec.Struct):
    user: UserOut
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class TotpSetupOut(msgspec.Struct):
    secret: str
    otpauth_uri: str


class TotpEnabledOut(msgspec.Struct):
    totp_enabled: bool
    recovery_codes: list[str]


class RecoveryCodesOut(msgspec.Struct):
    recovery_codes: list[str]


class TotpDisabledOut(msgspec.Struct):
    totp_enabled: bool


def _validate_password(req: ApiRequest, password: str) -> None:
    minimum = req.core.settings.auth.password_min_length
    if len(password) < minimum:
        raise field_error("password", f"must be at least {minimum} characters")


@router.post("/api/auth/register", summary="Create an account", auth="none", status=201, body=RegisterBody,
             response=RegisterOut, errors=("email_taken", "rate_limited"))
async def register(req: ApiRequest) -> dict:
    body: RegisterBody = req.body
    _validate_password(req, body.password)
    user, tokens = await req.app[ACCOUNTS].register(email=body.email, password=body.password, name=body.name,
                                                    client_ip=req.client_ip)
    return {"user": {"id": user.id, "email": user.email, "name": user.name}, **dataclasses.asdict(tokens)}


@router.post("/api/auth/login", summary="Sign in with email, password and (for 2FA accounts) a TOTP or recovery code",
             auth="none", body=LoginBody, response=TokensOut,
             errors=("invalid_credentials", "totp_required", "invalid_totp", "account_disabled", "rate_limited"))
async def login(req: ApiRequest) -> object:
    """Throttled per account and per client IP: `rate_limited` with `details.retry_after` and a
    `Retry-After` header. Unknown emails get exactly the answers of wrong passwords."""
    body: LoginBody = req.body
    _one_second_factor(body.totp_code, body.recovery_code, "totp_code")
    return await req.app[ACCOUNTS].login(email=body.email, password=body.password, totp_code=body.totp_code,
                                         recovery_code=body.recovery_code, client_ip=req.client_ip)


@router.post("/api/auth/refresh", summary="Exchange a refresh token for a new token pair (rotation)",
             auth="none", body=RefreshBody, response=TokensOut, errors=("invalid_token",))
async def refresh(req: ApiRequest) -> object:
    return await req.app[ACCOUNTS].refresh(req.body.refresh_token)


@router.post("/api/auth/logout", summary="Revoke this device's refresh tokens (or all devices)", status=204,
             body=LogoutBody)
async def logout(req: ApiRequest) -> None:
    assert req.principal is not None
    accounts = req.app[ACCOUNTS]
    if req.body.all_devices:
        await accounts.logout_everywhere(req.principal)
    else:
        await accounts.logout(req.principal, req.body.refresh_token)


@router.post("/api/auth/2fa/setup", summary="Start two-factor setup: a new TOTP secret and otpauth URI",
             response=TotpSetupOut, errors=("invalid_state",))
async def totp_setup(req: ApiRequest) -> dict:
    """The secret is shown once; it is stored encrypted and becomes active with `/2fa/enable`."""
    assert req.principal is not None
    return await req.app[ACCOUNTS].twofactor.setup(req.principal)


@router.post("/api/auth/2fa/enable", summary="Turn on two-factor auth by proving a code from the new secret",
             body=TotpEnableBody, response=TotpEnabledOut, errors=("invalid_totp", "invalid_state"))
async def totp_enable(req: ApiRequest) -> dict:
    """Answers the recovery codes, once: each signs in once instead of a TOTP code."""
    assert req.principal is not None
    codes = await req.app[ACCOUNTS].twofactor.enable(req.principal, req.body.code)
    return {"totp_enabled": True, "recovery_codes": codes}


@router.post("/api/auth/2fa/recovery-codes", summary="Replace all recovery codes (needs a valid TOTP code)",
             body=TotpEnableBody, response=RecoveryCodesOut,
             errors=("invalid_totp", "invalid_state", "rate_limited"))
async def regenerate_recovery_codes(req: ApiRequest) -> dict:
    """Every earlier recovery code stops working; the new ones are shown once."""
    assert req.principal is not None
    codes = await req.app[ACCOUNTS].twofactor.regenerate_recovery_codes(req.principal, req.body.code)
    return {"recovery_codes": codes}


@router.post("/api/auth/2fa/disable", summary="Turn off two-factor auth (password and a TOTP or recovery code)",
             body=TotpDisableBody, response=TotpDisabledOut,
             errors=("invalid_credentials", "invalid_totp", "invalid_state", "rate_limited"))
async def totp_disable(req: ApiRequest) -> dict:
    assert req.principal is not None
    body: TotpDisableBody = req.body
    _one_second_factor(body.code, body.recovery_code, "code")
    if not body.code and not body.recovery_code:
        raise field_error("code", "a TOTP code (code) or a recovery_code is required")
    await req.app[ACCOUNTS].twofactor.disable(req.principal, password=body.password, totp_code=body.code,
                                              recovery_code=body.recovery_code)
    return {"totp_enabled": False}


@router.post("/api/auth/password", summary="Change the password (revokes every other session)", status=204,
             body=PasswordChangeBody, errors=("invalid_credentials", "rate_limited"))
async def change_password(req: ApiRequest) -> None:
    """Other devices' refresh tokens are revoked; this session stays signed in."""
    assert req.principal is not None
    await req.app[ACCOUNTS].profile.change_password(
        req.principal, current_password=req.body.current_password, new_password=req.body.new_password
    )


def _one_second_factor(code: str | None, recovery_code: str | None, code_field: str) -> None:
    if code and recovery_code:
        raise validation_failed([{"field": "recovery_code", "message": f"send {code_field} or recovery_code, not both"}])


__all__ = ["ACCOUNTS", "UserOut", "public_user", "router"]
