"""Two-factor auth over real HTTP: recovery codes (single use, also concurrently), regeneration,
disabling, the secret encrypted at rest, concurrent enable and TOTP replay."""

from __future__ import annotations

import asyncio
import re
import time

import pyotp
from cryptography.fernet import Fernet

from tests.conftest import TEST_ENCRYPTION_KEY
from tests.support.api import Api, User


def code_at(user: User, steps_ahead: int) -> str:
    return pyotp.TOTP(user.totp_secret).at(int(time.time()) + 30 * steps_ahead)


async def _api(app_factory, settings_factory, http, **overrides) -> tuple[Api, object]:
    server = await app_factory(settings_factory(**overrides))
    from handlers.api import CORE

    return Api(str(server.make_url("/")), http), server.app[CORE].db


async def _enable(api: Api, user: User) -> list[str]:
    status, body = await api.post("/api/auth/2fa/setup", user=user)
    assert status == 200, body
    user.totp_secret = body["secret"]
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    status, body = await api.post("/api/auth/2fa/enable", user=user, json={"code": pyotp.TOTP(user.totp_secret).now()})
    assert status == 200 and body["totp_enabled"] is True, body
    return body["recovery_codes"]


async def test_enable_returns_recovery_codes_and_stores_only_hashes_and_ciphertext(api, db, settings):
    user = await api.register()
    codes = await _enable(api, user)
    assert len(codes) == settings.auth.recovery_code_count == len(set(codes))
    assert all(re.fullmatch(r"[2-9a-hjkmnp-z]{4}(-[2-9a-hjkmnp-z]{4}){3}", c) for c in codes)
    status, me = await api.get("/api/me", user=user)
    assert me["totp_enabled"] is True and me["recovery_codes_remaining"] == len(codes)
    # at rest: the recovery codes only as hashes, the TOTP secret only encrypted
    rows = await db.fetch("SELECT code_hash FROM recovery_codes WHERE user_id = $1", __import__("uuid").UUID(user.id))
    assert len(rows) == len(codes)
    stored = b"".join(bytes(r["code_hash"]) for r in rows)
    for code in codes:
        assert code.encode() not in stored and code.replace("-", "").encode() not in stored
    raw = bytes(await db.fetchval("SELECT totp_secret_enc FROM users WHERE email = $1", user.email))
    assert user.totp_secret.encode() not in raw and user.totp_secret.lower().encode() not in raw
    assert Fernet(TEST_ENCRYPTION_KEY.encode()).decrypt(raw).decode() == user.totp_secret


async def test_recovery_code_signs_in_once(api):
    user = await api.register()
    codes = await _enable(api, user)
    login = {"email": user.email, "password": user.password}
    status, body = await api.post("/api/auth/login", json={**login, "recovery_code": codes[0]})
    assert status == 200 and body["access_token"], body
    status, body = await api.post("/api/auth/login", json={**login, "recovery_code": codes[0]})
    assert status == 401 and body["error"]["code"] == "invalid_totp"
    # case and separators do not matter
    status, body = await api.post("/api/auth/login",
                                  json={**login, "recovery_code": codes[1].upper().replace("-", " ")})
    assert status == 200, body
    status, me = await api.get("/api/me", user=user)
    assert me["recovery_codes_remaining"] == len(codes) - 2
    # a recovery code does not replace the password
    status, body = await api.post("/api/auth/login", json={**login, "password": "wrong password!",
                                                           "recovery_code": codes[2]})
    assert status == 401 and body["error"]["code"] == "invalid_credentials"
    # both factors at once is a client error
    status, body = await api.post("/api/auth/login", json={**login, "recovery_code": codes[2],
                                                           "totp_code": "123456"})
    assert status == 422 and body["error"]["details"][0]["field"] == "recovery_code"


async def test_concurrent_use_of_one_recovery_code_succeeds_once(app_factory, settings_factory, http):
    api, _ = await _api(app_factory, settings_factory, http, login_max_failures_per_account=100)
    user = await api.register()
    codes = await _enable(api, user)
    login = {"email": user.email, "password": user.password, "recovery_code": codes[3]}
    results = await asyncio.gather(*(api.post("/api/auth/login", json=login) for _ in range(8)))
    assert sorted(s for s, _ in results) == [200] + [401] * 7
    assert {b["error"]["code"] for s, b in results if s == 401} == {"invalid_totp"}


async def test_concurrent_use_of_one_totp_code_succeeds_once(app_factory, settings_factory, http):
    api, _ = await _api(app_factory, settings_factory, http, login_max_failures_per_account=100)
    user = await api.register()
    await _enable(api, user)
    login = {"email": user.email, "password": user.password, "totp_code": code_at(user, 1)}
    results = await asyncio.gather(*(api.post("/api/auth/login", json=login) for _ in range(8)))
    assert sorted(s for s, _ in results) == [200] + [401] * 7


async def test_concurrent_enables_hand_out_one_set_of_codes(api):
    user = await api.register()
    status, body = await api.post("/api/auth/2fa/setup", user=user)
    totp = pyotp.TOTP(body["secret"])
    now = int(time.time())
    results = await asyncio.gather(*(api.post("/api/auth/2fa/enable", user=user, json={"code": totp.at(now + d)})
                                     for d in (0, 0, 30, 30)))
    assert [s for s, _ in results].count(200) == 1, results


async def test_regenerate_needs_a_valid_totp_and_replaces_all_codes(app_factory, settings_factory, http):
    api, _ = await _api(app_factory, settings_factory, http, totp_valid_window=3)
    user = await api.register()
    old = await _enable(api, user)
    status, body = await api.post("/api/auth/2fa/recovery-codes", user=user, json={"code": "000000"})
    assert status == 401 and body["error"]["code"] == "invalid_totp"
    fresh = code_at(user, 1)
    status, body = await api.post("/api/auth/2fa/recovery-codes", user=user, json={"code": fresh})
    assert status == 200 and len(body["recovery_codes"]) == len(old) and not set(old) & set(body["recovery_codes"])
    new = body["recovery_codes"]
    login = {"email": user.email, "password": user.password}
    status, _ = await api.post("/api/auth/login", json={**login, "recovery_code": old[0]})
    assert status == 401
    status, _ = await api.post("/api/auth/login", json={**login, "recovery_code": new[0]})
    assert status == 200
    # a TOTP code cannot be replayed for a second regeneration
    status, body = await api.post("/api/auth/2fa/recovery-codes", user=user, json={"code": fresh})
    assert status == 401 and body["error"]["code"] == "invalid_totp"


async def test_disable_needs_password_and_a_code(api, db):
    user = await api.register()
    codes = await _enable(api, user)
    status, body = await api.post("/api/auth/2fa/disable", user=user, json={"password": user.password})
    assert status == 422 and body["error"]["details"][0]["field"] == "code"
    status, body = await api.post("/api/auth/2fa/disable", user=user,
                                  json={"password": "not the password", "recovery_code": codes[0]})
    assert status == 401 and body["error"]["code"] == "invalid_credentials"
    status, body = await api.post("/api/auth/2fa/disable", user=user,
                                  json={"password": user.password, "code": "000000"})
    assert status == 401 and body["error"]["code"] == "invalid_totp"
    status, body = await api.post("/api/auth/2fa/disable", user=user,
                                  json={"password": user.password, "recovery_code": codes[0]})
    assert status == 200 and body == {"totp_enabled": False}
    status, me = await api.get("/api/me", user=user)
    assert me["totp_enabled"] is False and me["recovery_codes_remaining"] == 0
    row = await db.fetchrow("SELECT totp_secret_enc, (SELECT count(*) FROM recovery_codes r WHERE r.user_id = u.id) n"
                            " FROM users u WHERE email = $1", user.email)
    assert row["totp_secret_enc"] is None and row["n"] == 0
    assert (await api.login(user))[0] == 200
    actions = [r["action"] for r in await db.fetch(
        "SELECT action FROM security_audit WHERE user_id = (SELECT id FROM users WHERE email = $1) ORDER BY id",
        user.email)]
    assert actions == ["2fa.enabled", "2fa.disabled"]
    kinds = await db.fetch("SELECT data FROM outbox WHERE type = 'account.security_changed' ORDER BY seq")
    assert [k["data"]["change"] for k in kinds] == ["2fa.enabled", "2fa.disabled"]


async def test_reauth_guesses_are_throttled(app_factory, settings_factory, http):
    api, _ = await _api(app_factory, settings_factory, http, login_max_failures_per_account=2)
    user = await api.register()
    await _enable(api, user)
    for _ in range(2):
        status, _ = await api.post("/api/auth/2fa/recovery-codes", user=user, json={"code": "000000"})
        assert status == 401
    status, body = await api.post("/api/auth/2fa/recovery-codes", user=user, json={"code": code_at(user, 1)})
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert api.last_response.headers["Retry-After"] == str(body["error"]["details"]["retry_after"])
