"""Bad bearer tokens over real HTTP: always 401 `invalid_token`/`token_expired`, never a 500,
on a route that needs a user and on one where auth is optional."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import TEST_JWT_SECRET


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user_id: str, **overrides) -> dict:
    now = int(time.time())
    base = {"sub": user_id, "role": "admin", "iat": now, "exp": now + 600, "iss": "foyer", "aud": "foyer-api",
            "typ": "access"}
    base.update(overrides)
    return base


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_bad_tokens_are_401_never_500(api):
    user = await api.register()
    now = int(time.time())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header, body, sig = user.access_token.split(".")
    cases = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user.id))}.",
        "RS256": jwt.encode(_claims(user.id), rsa_key, algorithm="RS256"),
        "HS512": jwt.encode(_claims(user.id), TEST_JWT_SECRET, algorithm="HS512"),
        "wrong aud": jwt.encode(_claims(user.id, aud="other"), TEST_JWT_SECRET, algorithm="HS256"),
        "wrong iss": jwt.encode(_claims(user.id, iss="other"), TEST_JWT_SECRET, algorithm="HS256"),
        "typ refresh": jwt.encode(_claims(user.id, typ="refresh"), TEST_JWT_SECRET, algorithm="HS256"),
        "future iat": jwt.encode(_claims(user.id, iat=now + 3600), TEST_JWT_SECRET, algorithm="HS256"),
        "sub int": jwt.encode(_claims(user.id, sub=7), TEST_JWT_SECRET, algorithm="HS256"),
        "tampered signature": f"{header}.{body}.{sig[::-1]}",
        "tampered payload": f"{header}.{_b64(_claims(user.id))}.{sig}",
        "refresh token as access token": user.refresh_token,
        "garbage": "%%%not-a-token%%%",
    }
    for name, token in cases.items():
        for path in ("/api/me", "/api/auth/logout"):
            status, reply = await api.request("GET" if path == "/api/me" else "POST", path, json=None if path ==
                                              "/api/me" else {}, headers={"Authorization": f"Bearer {token}"})
            assert status == 401, (name, path, status, reply)
            assert reply["error"]["code"] == "invalid_token", (name, reply)
    expired = jwt.encode(_claims(user.id, iat=now - 4000, exp=now - 3000), TEST_JWT_SECRET, algorithm="HS256")
    status, reply = await api.get("/api/me", headers={"Authorization": f"Bearer {expired}"})
    assert status == 401 and reply["error"]["code"] == "token_expired"
    # a well-formed token for a user that does not exist
    ghost = jwt.encode(_claims(str(uuid.uuid4())), TEST_JWT_SECRET, algorithm="HS256")
    status, reply = await api.get("/api/me", headers={"Authorization": f"Bearer {ghost}"})
    assert status == 401 and reply["error"]["code"] == "invalid_token"
    # and the real token still works
    status, _ = await api.get("/api/me", user=user)
    assert status == 200
