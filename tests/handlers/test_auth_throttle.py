"""Login throttling over real HTTP: per account, per client IP (trusted proxies only), answers
for unknown emails identical to known ones, atomic under concurrency."""

from __future__ import annotations

import asyncio
import time

import pyotp

from tests.support.api import Api

WRONG = "definitely the wrong password"


async def _api(app_factory, settings_factory, http, **overrides) -> Api:
    server = await app_factory(settings_factory(**overrides))
    return Api(str(server.make_url("/")), http)


async def _login(api: Api, email: str, password: str, headers: dict | None = None, **extra) -> tuple[int, dict, dict]:
    status, body = await api.post("/api/auth/login", json={"email": email, "password": password, **extra},
                                  headers=headers)
    return status, body, dict(api.last_response.headers)


def _assert_throttled(status: int, body: dict, headers: dict, window: int) -> int:
    assert status == 429, (status, body)
    assert body["error"]["code"] == "rate_limited"
    retry = body["error"]["details"]["retry_after"]
    assert 1 <= retry <= window and headers["Retry-After"] == str(retry)
    return retry


async def test_account_is_throttled_and_success_resets(app_factory, settings_factory, http):
    api = await _api(app_factory, settings_factory, http, login_max_failures_per_account=3,
                     login_max_failures_per_ip=100, login_window_seconds=60)
    user = await api.register()
    # two failures, then a success resets the account window ...
    for _ in range(2):
        assert (await _login(api, user.email, WRONG))[0] == 401
    assert (await _login(api, user.email, user.password))[0] == 200
    # ... so three more failures are answered normally, the fourth attempt is throttled,
    for _ in range(3):
        assert (await _login(api, user.email, WRONG))[0] == 401
    _assert_throttled(*(await _login(api, user.email, WRONG)), window=60)
    # even with the right password (no password is checked while throttled), any email casing,
    _assert_throttled(*(await _login(api, user.email.upper(), user.password)), window=60)
    # while another account from the same IP is unaffected.
    other = await api.register()
    assert (await _login(api, other.email, other.password))[0] == 200


async def test_unknown_email_is_answered_exactly_like_a_known_one(app_factory, settings_factory, http):
    api = await _api(app_factory, settings_factory, http, login_max_failures_per_account=3,
                     login_max_failures_per_ip=100, login_window_seconds=60)
    user = await api.register()
    known = [await _login(api, user.email, WRONG) for _ in range(5)]
    unknown = [await _login(api, "nobody-" + user.email, WRONG) for _ in range(5)]
    for (s1, b1, h1), (s2, b2, h2) in zip(known, unknown, strict=True):
        assert s1 == s2
        if s1 == 429:
            r1, r2 = _assert_throttled(s1, b1, h1, 60), _assert_throttled(s2, b2, h2, 60)
            assert abs(r1 - r2) <= 1  # seconds left in the window; identical up to the clock
            b1["error"]["details"]["retry_after"] = b2["error"]["details"]["retry_after"]
        assert b1 == b2
        assert set(h1) - {"Date", "X-Request-Id"} == set(h2) - {"Date", "X-Request-Id"}
    assert [s for s, _, _ in known] == [401, 401, 401, 429, 429]


async def test_unknown_email_costs_a_password_hash(app_factory, settings_factory, http):
    """No timing oracle: an unknown email runs argon2 like a wrong password does."""
    api = await _api(app_factory, settings_factory, http, login_max_failures_per_account=100,
                     login_max_failures_per_ip=100)
    user = await api.register()

    async def fastest(email: str) -> float:
        times = []
        for _ in range(4):
            started = time.perf_counter()
            assert (await _login(api, email, WRONG))[0] == 401
            times.append(time.perf_counter() - started)
        return min(times)

    known, unknown = await fastest(user.email), await fastest("ghost-" + user.email)
    assert unknown > 0.5 * known, (known, unknown)


async def test_concurrent_guesses_cannot_exceed_the_limit(app_factory, settings_factory, http):
    api = await _api(app_factory, settings_factory, http, login_max_failures_per_account=3,
                     login_max_failures_per_ip=100, login_window_seconds=60)
    user = await api.register()
    results = await asyncio.gather(*(_login(api, user.email, WRONG) for _ in range(12)))
    statuses = sorted(s for s, _, _ in results)
    assert statuses == [401] * 3 + [429] * 9


async def test_client_ip_is_throttled_across_accounts(app_factory, settings_factory, http):
    api = await _api(app_factory, settings_factory, http, login_max_failures_per_account=100,
                     login_max_failures_per_ip=4, login_window_seconds=60, trusted_proxies=("127.0.0.1",))
    user = await api.register()
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    for i in range(4):
        assert (await _login(api, f"victim{i}@example.org", WRONG, attacker))[0] == 401
    _assert_throttled(*(await _login(api, "victim9@example.org", WRONG, attacker)), window=60)
    _assert_throttled(*(await _login(api, user.email, user.password, attacker)), window=60)
    # another client (behind the same trusted proxy) is not affected
    assert (await _login(api, user.email, user.password, {"X-Forwarded-For": "203.0.113.8"}))[0] == 200


async def test_forwarded_for_is_ignored_from_untrusted_peers(app_factory, settings_factory, http):
    api = await _api(app_factory, settings_factory, http, login_max_failures_per_account=100,
                     login_max_failures_per_ip=3, login_window_seconds=60)
    # A spoofed X-Forwarded-For per request does not give the attacker fresh IP windows.
    for i in range(3):
        status, _, _ = await _login(api, f"v{i}@example.org", WRONG, {"X-Forwarded-For": f"198.51.100.{i}"})
        assert status == 401
    _assert_throttled(*(await _login(api, "v9@example.org", WRONG, {"X-Forwarded-For": "198.51.100.99"})),
                      window=60)


async def test_second_factor_guesses_count_and_missing_code_does_not(app_factory, settings_factory, http):
    api = await _api(app_factory, settings_factory, http, login_max_failures_per_account=2,
                     login_max_failures_per_ip=100, login_window_seconds=60)
    user = await api.register_2fa()
    # the right password without a code is not a guess: never throttled
    for _ in range(4):
        status, body, _ = await _login(api, user.email, user.password)
        assert status == 401 and body["error"]["code"] == "totp_required"
    # wrong codes are guesses
    for _ in range(2):
        status, body, _ = await _login(api, user.email, user.password, totp_code="000000")
        assert status == 401 and body["error"]["code"] == "invalid_totp"
    code = pyotp.TOTP(user.totp_secret).at(int(time.time()) + 30)
    _assert_throttled(*(await _login(api, user.email, user.password, totp_code=code)), window=60)


async def test_sign_ups_are_limited_per_ip(app_factory, settings_factory, http):
    api = await _api(app_factory, settings_factory, http, register_max_per_ip=3, register_window_seconds=60,
                     trusted_proxies=("127.0.0.1",))
    bot = {"X-Forwarded-For": "192.0.2.50"}
    for i in range(3):
        status, _ = await api.post("/api/auth/register", headers=bot,
                                   json={"email": f"bot{i}@example.org", "password": "x" * 12, "name": "Bot"})
        assert status == 201
    status, body = await api.post("/api/auth/register", headers=bot,
                                  json={"email": "bot9@example.org", "password": "x" * 12, "name": "Bot"})
    _assert_throttled(status, body, dict(api.last_response.headers), window=60)
    status, _ = await api.post("/api/auth/register", headers={"X-Forwarded-For": "192.0.2.51"},
                               json={"email": "human@example.org", "password": "x" * 12, "name": "Human"})
    assert status == 201


def test_throttle_settings_are_validated():
    import pytest

    from config import SettingsError, load_settings

    for env, name in (({"FOYER_LOGIN_MAX_FAILURES_PER_ACCOUNT": "0"}, "FOYER_LOGIN_MAX_FAILURES_PER_ACCOUNT"),
                      ({"FOYER_REGISTER_MAX_PER_IP": "-1"}, "FOYER_REGISTER_MAX_PER_IP"),
                      ({"FOYER_TOTP_VALID_WINDOW": "99"}, "FOYER_TOTP_VALID_WINDOW")):
        with pytest.raises(SettingsError, match=name):
            load_settings(env)
