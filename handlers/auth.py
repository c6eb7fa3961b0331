"""Accounts over HTTP: register, login, refresh, logout, /api/me, two-factor setup."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from aiohttp import web

from domain.accounts import AccountService, public_user
from handlers.api import ApiRequest, Router

router = Router("auth", "Accounts, tokens and two-factor authentication.")
ACCOUNTS: web.AppKey[AccountService] = web.AppKey("foyer.accounts", AccountService)

Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$", max_length=254)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
TotpCode = Annotated[str, msgspec.Meta(min_length=6, max_length=16)]


class RegisterBody(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Password
    totp_code: TotpCode | None = None


class RefreshBody(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class LogoutBody(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    all_devices: bool = False


class TotpEnableBody(msgspec.Struct, forbid_unknown_fields=True):
    code: TotpCode


class UserOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    email: str | None = None
    role: str | None = None
    totp_enabled: bool | None = None
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


def _validate_password(req: ApiRequest, password: str) -> None:
    from domain.errors import field_error

    minimum = req.core.settings.auth.password_min_length
    if len(password) < minimum:
        raise field_error("password", f"must be at least {minimum} characters")


@router.post("/api/auth/register", summary="Create an account", auth="none", status=201, body=RegisterBody,
             response=RegisterOut, errors=("email_taken",))
async def register(req: ApiRequest) -> dict:
    body: RegisterBody = req.body
    _validate_password(req, body.password)
    user, tokens = await req.app[ACCOUNTS].register(email=body.email, password=body.password, name=body.name)
    return {"user": {"id": user.id, "email": user.email, "name": user.name}, **dataclasses.asdict(tokens)}


@router.post("/api/auth/login", summary="Sign in with email, password and (for 2FA accounts) a TOTP code",
             auth="none", body=LoginBody, response=TokensOut,
             errors=("invalid_credentials", "totp_required", "invalid_totp", "account_disabled", "rate_limited"))
async def login(req: ApiRequest) -> object:
    body: LoginBody = req.body
    return await req.app[ACCOUNTS].login(email=body.email, password=body.password, totp_code=body.totp_code)


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


@router.get("/api/me", summary="The signed-in user", response=UserOut)
async def me(req: ApiRequest) -> dict:
    assert req.principal is not None
    return await req.app[ACCOUNTS].me(req.principal)


@router.post("/api/auth/2fa/setup", summary="Start two-factor setup: a new TOTP secret and otpauth URI",
             response=TotpSetupOut, errors=("invalid_state",))
async def totp_setup(req: ApiRequest) -> dict:
    assert req.principal is not None
    return await req.app[ACCOUNTS].totp_setup(req.principal)


@router.post("/api/auth/2fa/enable", summary="Turn on two-factor auth by proving a code from the new secret",
             body=TotpEnableBody, errors=("invalid_totp", "invalid_state"))
async def totp_enable(req: ApiRequest) -> dict:
    assert req.principal is not None
    await req.app[ACCOUNTS].totp_enable(req.principal, req.body.code)
    return {"totp_enabled": True}


__all__ = ["ACCOUNTS", "public_user", "router"]
