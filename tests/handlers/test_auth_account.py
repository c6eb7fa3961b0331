"""The user's own account over real HTTP: PATCH /api/me (encrypted phone, email change with the
password, mass assignment refused), password change, refresh races and logout everywhere."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet

from tests.conftest import TEST_ENCRYPTION_KEY


async def test_patch_name_and_phone_encrypted_at_rest(api, db):
    user = await api.register()
    status, me = await api.patch("/api/me", user=user, json={"name": "Grace H.", "phone": "+49 (30) 1234-5678"})
    assert status == 200 and me["name"] == "Grace H." and me["phone"] == "+493012345678", me
    status, me = await api.get("/api/me", user=user)
    assert me["phone"] == "+493012345678"
    raw = bytes(await db.fetchval("SELECT phone_enc FROM users WHERE id = $1", uuid.UUID(user.id)))
    assert b"3012345678" not in raw and b"+49" not in raw
    assert Fernet(TEST_ENCRYPTION_KEY.encode()).decrypt(raw) == b"+493012345678"
    status, body = await api.patch("/api/me", user=user, json={"phone": "call me maybe"})
    assert status == 422 and body["error"]["details"][0]["field"] == "phone"
    status, me = await api.patch("/api/me", user=user, json={"phone": None})
    assert status == 200 and me["phone"] is None
    assert await db.fetchval("SELECT phone_enc FROM users WHERE id = $1", uuid.UUID(user.id)) is None


async def test_mass_assignment_is_refused(api, db):
    user = await api.register()
    for field, value in (("role", "admin"), ("id", str(uuid.uuid4())), ("totp_enabled", True),
                         ("password_hash", "x"), ("created_at", "2020-01-01T00:00:00Z")):
        status, body = await api.patch("/api/me", user=user, json={"name": "X", field: value})
        assert status == 422, (field, body)
        assert body["error"]["code"] == "validation_failed"
        assert body["error"]["details"] == [{"field": field, "message": "unknown field (not settable here)"}]
    status, body = await api.patch("/api/me", user=user, json={"email": "new-" + user.email})
    assert status == 422 and body["error"]["details"][0]["field"] == "current_password"
    row = await db.fetchrow("SELECT name, role, email, totp_enabled FROM users WHERE id = $1", uuid.UUID(user.id))
    assert (row["name"], row["role"], row["email"], row["totp_enabled"]) == (user.name, "user", user.email, False)


async def test_email_change_needs_the_current_password(api, db):
    user = await api.register()
    other = await api.register()
    new_email = "moved-" + user.email
    status, body = await api.patch("/api/me", user=user, json={"email": new_email, "current_password": "wrong one!"})
    assert status == 401 and body["error"]["code"] == "invalid_credentials"
    status, body = await api.patch("/api/me", user=user, json={"email": other.email.upper(),
                                                               "current_password": user.password})
    assert status == 409 and body["error"]["code"] == "email_taken"
    status, me = await api.patch("/api/me", user=user, json={"email": new_email, "current_password": user.password})
    assert status == 200 and me["email"] == new_email
    old_email, user.email = user.email, new_email
    assert (await api.login(user))[0] == 200
    status, body = await api.post("/api/auth/login", json={"email": old_email, "password": user.password})
    assert status == 401
    audit = await db.fetchrow("SELECT action, actor, details FROM security_audit WHERE user_id = $1", uuid.UUID(user.id))
    assert (audit["action"], audit["actor"], audit["details"]) == ("email.changed", "self", {"old_email": old_email})
    fact = await db.fetchrow("SELECT data FROM outbox WHERE type = 'account.security_changed'")
    assert fact["data"] == {"user_id": user.id, "change": "email.changed", "old_email": old_email}


async def test_password_change_revokes_other_sessions(api):
    user = await api.register()
    status, other_device = await api.login(user)
    assert status == 200
    status, body = await api.post("/api/auth/password", user=user,
                                  json={"current_password": "not it at all", "new_password": "a new long password"})
    assert status == 401 and body["error"]["code"] == "invalid_credentials"
    status, body = await api.post("/api/auth/password", user=user,
                                  json={"current_password": user.password, "new_password": "short"})
    assert status == 422 and body["error"]["details"][0]["field"] == "new_password"
    status, _ = await api.post("/api/auth/password", user=user,
                               json={"current_password": user.password, "new_password": "a new long password"})
    assert status == 204
    # the other device is signed out (its access token too, before it expires), this one keeps its session
    status, body = await api.get("/api/me", headers={"Authorization": f"Bearer {other_device['access_token']}"})
    assert status == 401 and body["error"]["code"] == "invalid_token"
    assert (await api.get("/api/me", user=user))[0] == 200
    status, _ = await api.post("/api/auth/refresh", json={"refresh_token": other_device["refresh_token"]})
    assert status == 401
    status, _ = await api.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert status == 200
    assert (await api.login(user))[0] == 401
    user.password = "a new long password"
    assert (await api.login(user))[0] == 200


async def test_concurrent_refresh_with_one_token_wins_once(api):
    user = await api.register()
    results = await asyncio.gather(*(api.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
                                     for _ in range(8)))
    winners = [b for s, b in results if s == 200]
    assert len(winners) == 1 and sorted(s for s, _ in results) == [200] + [401] * 7
    # the losers were replays of a used token: the whole family is revoked, the winner's new token too
    status, body = await api.post("/api/auth/refresh", json={"refresh_token": winners[0]["refresh_token"]})
    assert status == 401 and body["error"]["code"] == "invalid_token"


async def test_logout_everywhere(api):
    user = await api.register()
    sessions = [(await api.login(user))[1] for _ in range(3)]
    status, _ = await api.post("/api/auth/logout", user=user, json={"all_devices": True})
    assert status == 204
    for token in [user.refresh_token] + [s["refresh_token"] for s in sessions]:
        status, _ = await api.post("/api/auth/refresh", json={"refresh_token": token})
        assert status == 401
    for access in [user.access_token] + [s["access_token"] for s in sessions]:  # no waiting for `exp`
        status, body = await api.get("/api/me", headers={"Authorization": f"Bearer {access}"})
        assert status == 401 and body["error"]["code"] == "invalid_token"
    # a new sign-in starts a fresh session
    status, fresh = await api.login(user)
    assert status == 200
    assert (await api.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]}))[0] == 200


async def test_logout_only_revokes_this_session(api):
    user = await api.register()
    status, other = await api.login(user)
    assert (await api.post("/api/auth/logout", user=user, json={}))[0] == 204
    assert (await api.post("/api/auth/refresh", json={"refresh_token": user.refresh_token}))[0] == 401
    assert (await api.get("/api/me", user=user))[0] == 401  # this session's access token is refused at once
    assert (await api.get("/api/me", headers={"Authorization": f"Bearer {other['access_token']}"}))[0] == 200
    assert (await api.post("/api/auth/refresh", json={"refresh_token": other["refresh_token"]}))[0] == 200


async def test_sweeper_deletes_only_long_expired_families(api, server, db):
    from handlers.api import CORE
    from server.components.accounts import sweep_refresh_tokens

    user = await api.register()
    old_family = uuid.uuid4()
    long_ago = datetime.now(UTC) - timedelta(days=3)
    await db.execute(
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
        uuid.UUID(user.id), old_family, b"old-token-hash", long_ago,
    )
    assert await sweep_refresh_tokens(server.app[CORE]) == 1
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens WHERE family_id = $1", old_family) == 0
    assert (await api.post("/api/auth/refresh", json={"refresh_token": user.refresh_token}))[0] == 200
