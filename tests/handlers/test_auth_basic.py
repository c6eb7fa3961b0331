"""Register, login, refresh rotation, logout, /api/me and two-factor login."""

from __future__ import annotations

import asyncio
import time

import pyotp
import pytest
import socketio

from tests.support.live import NAMESPACE, LiveClient


async def test_register_login_me(api):
    user = await api.register("Ada")
    status, me = await api.get("/api/me", user=user)
    assert status == 200
    assert me["email"] == user.email and me["name"] == "Ada" and me["role"] == "user"
    status, tokens = await api.login(user)
    assert status == 200 and tokens["access_token"] and tokens["refresh_token"]


async def test_wrong_password_and_unknown_user_answer_the_same(api):
    user = await api.register()
    user.password = "wrong password entirely"
    status1, body1 = await api.login(user)
    status2, body2 = await api.post("/api/auth/login", json={"email": "nobody@example.org", "password": "whatever1234"})
    assert status1 == status2 == 401
    assert body1 == body2 == {"error": {"code": "invalid_credentials", "message": "email or password is wrong"}}


async def test_duplicate_email(api):
    user = await api.register()
    status, body = await api.post("/api/auth/register",
                                  json={"email": user.email.upper(), "password": "x" * 12, "name": "B"})
    assert status == 409 and body["error"]["code"] == "email_taken"


async def test_register_validation_is_field_level(api):
    status, body = await api.post("/api/auth/register", json={"email": "not-an-email", "password": "x" * 12, "name": "A"})
    assert status == 422 and body["error"]["details"][0]["field"] == "email"
    status, body = await api.post("/api/auth/register", json={"email": "a@b.org", "password": "short", "name": "A"})
    assert status == 422 and body["error"]["details"][0]["field"] == "password"
    status, body = await api.post("/api/auth/register", json={"email": "a@b.org", "password": "x" * 12})
    assert status == 422 and body["error"]["details"] == [{"field": "name", "message": "required"}]


async def test_mass_assignment_of_role_is_rejected(api):
    status, body = await api.post(
        "/api/auth/register", json={"email": "m@example.org", "password": "x" * 12, "name": "M", "role": "admin"}
    )
    assert status == 422
    assert body["error"]["details"] == [{"field": "role", "message": "unknown field (not settable here)"}]


async def test_refresh_rotates_and_reuse_revokes_family(api):
    user = await api.register()
    status, first = await api.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert status == 200 and first["refresh_token"] != user.refresh_token
    # Replaying the old token is theft: it fails and revokes the family, including the new token.
    status, body = await api.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert status == 401 and body["error"]["code"] == "invalid_token"
    status, body = await api.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert status == 401


async def test_logout_revokes_refresh(api):
    user = await api.register()
    status, _ = await api.post("/api/auth/logout", user=user, json={"refresh_token": user.refresh_token})
    assert status == 204
    status, body = await api.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert status == 401


async def test_me_requires_valid_token(api):
    status, body = await api.get("/api/me")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = await api.get("/api/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert status == 401 and body["error"]["code"] == "invalid_token"


async def test_two_factor_login_and_replay(api):
    user = await api.register_2fa()
    status, body = await api.login(user)
    assert status == 401 and body["error"]["code"] == "totp_required"
    totp = pyotp.TOTP(user.totp_secret)
    # The code used to enable 2FA was consumed; wait for a fresh step if needed.
    code = totp.at(int(__import__("time").time()) + 30)
    status, body = await api.login(user, totp_code=code)
    assert status == 200, body
    status, body = await api.login(user, totp_code=code)
    assert status == 401 and body["error"]["code"] == "invalid_totp"


async def test_signing_out_closes_the_sessions_live_connections(api, server):
    user = await api.register()
    status, other = await api.login(user)  # a second session of the same account
    url = str(server.make_url("/"))
    mine, theirs = LiveClient(url, user.access_token), LiveClient(url, other["access_token"])
    await mine.connect()
    await theirs.connect()
    assert (await api.post("/api/auth/logout", user=user, json={}))[0] == 204
    deadline = time.monotonic() + 3
    while NAMESPACE in mine.sio.namespaces:
        assert time.monotonic() < deadline, "the signed-out session's live connection is still open"
        await asyncio.sleep(0.02)
    assert NAMESPACE in theirs.sio.namespaces  # the other session stays connected
    again = LiveClient(url, user.access_token)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await again.connect()
    assert again.connect_error["data"]["code"] == "invalid_token"
    await theirs.disconnect()
