"""Single-use second factors across two separate node processes racing with the same code:
PostgreSQL, not node memory, decides, so exactly one node accepts each code."""

from __future__ import annotations

import asyncio
import time

import pyotp
import pytest

from tests.support.api import Api

pytestmark = pytest.mark.multinode


async def test_two_nodes_racing_with_the_same_code_accept_it_once(nodes, http):
    env = {"FOYER_LOGIN_MAX_FAILURES_PER_ACCOUNT": "100", "FOYER_TOTP_VALID_WINDOW": "2"}
    a, b = await asyncio.gather(nodes.start(env=env), nodes.start(env=env))
    api_a, api_b = Api(a.url, http), Api(b.url, http)
    user = await api_a.register()
    status, body = await api_a.post("/api/auth/2fa/setup", user=user)
    totp = pyotp.TOTP(body["secret"])
    status, body = await api_b.post("/api/auth/2fa/enable", user=user, json={"code": totp.now()})
    assert status == 200, body
    codes = body["recovery_codes"]
    login = {"email": user.email, "password": user.password}

    async def race(payload: dict) -> list[tuple[int, dict]]:
        # several requests per node so both nodes are inside the check at the same time
        return await asyncio.gather(*(api.post("/api/auth/login", json={**login, **payload})
                                      for api in (api_a, api_b) for _ in range(3)))

    # TOTP: each fresh step wins exactly once across both nodes
    now = int(time.time())
    for ahead in (1, 2):
        results = await race({"totp_code": totp.at(now + 30 * ahead)})
        assert sorted(s for s, _ in results) == [200] + [401] * 5, results
        assert {b["error"]["code"] for s, b in results if s != 200} == {"invalid_totp"}
    # recovery codes: each wins exactly once across both nodes
    for code in codes[:3]:
        results = await race({"recovery_code": code})
        assert sorted(s for s, _ in results) == [200] + [401] * 5, results
    status, me = await api_a.get("/api/me", user=user)
    assert me["recovery_codes_remaining"] == len(codes) - 3


async def test_a_session_signed_out_on_one_node_is_refused_by_the_other_at_once(nodes, http):
    a, b = await asyncio.gather(nodes.start(), nodes.start())
    api_a, api_b = Api(a.url, http), Api(b.url, http)
    user = await api_a.register()
    status, other = await api_a.login(user)
    assert status == 200
    assert (await api_b.get("/api/me", user=user))[0] == 200  # node B has verified (and cached) the token
    assert (await api_a.post("/api/auth/logout", user=user, json={}))[0] == 204
    deadline = time.monotonic() + 2.0  # a Redis message away, not the token's 15 minutes
    while (await api_b.get("/api/me", user=user))[0] != 401:
        assert time.monotonic() < deadline, "node B still accepts the signed-out session's access token"
        await asyncio.sleep(0.02)
    # the user's other session is untouched, on both nodes
    for api in (api_a, api_b):
        assert (await api.get("/api/me", headers={"Authorization": f"Bearer {other['access_token']}"}))[0] == 200
    # a node started after the logout loads the revocation from Redis
    c = await nodes.start()
    status, body = await Api(c.url, http).get("/api/me", user=user)
    assert status == 401 and body["error"]["code"] == "invalid_token"
