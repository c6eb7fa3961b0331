"""Access-JWT hardening: every forged, confused, misdirected or stale token is `invalid_token`
(or `token_expired`), never accepted and never an unexpected exception."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from domain.errors import FoyerError
from domain.identity import Principal
from domain.tokens import TokenService

SECRET = "unit-test-secret-" + "s" * 32
ISS, AUD = "foyer", "foyer-api"


@pytest.fixture(scope="module")
def svc() -> TokenService:
    return TokenService(secret=SECRET, issuer=ISS, audience=AUD, access_ttl_seconds=900)


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {"sub": str(uuid.uuid4()), "role": "user", "iat": now, "nbf": now, "exp": now + 900, "iss": ISS,
            "aud": AUD, "typ": "access", "jti": uuid.uuid4().hex, "sid": str(uuid.uuid4())}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rejected(svc: TokenService, token: str, code: str = "invalid_token") -> None:
    with pytest.raises(FoyerError) as info:
        svc.verify_access(token)
    assert info.value.code == code, info.value


def test_round_trip(svc):
    user, session = uuid.uuid4(), uuid.uuid4()
    principal = svc.verify_access(svc.issue_access(Principal(user_id=user, role="admin", session_id=session)))
    assert principal == Principal(user_id=user, role="admin", session_id=session)
    assert svc.verify_access(jwt.encode(claims(), SECRET, algorithm="HS256")).role == "user"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(svc, alg):
    rejected(svc, f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims())}.")
    rejected(svc, f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims(role='admin'))}.{b64(b'sig')}")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_hmac_algorithms_are_refused_even_with_our_key(svc):
    for alg in ("HS384", "HS512"):
        rejected(svc, jwt.encode(claims(), SECRET, algorithm=alg))


def test_rs256_token_is_refused(svc, rsa_key):
    rejected(svc, jwt.encode(claims(), rsa_key, algorithm="RS256"))


def test_hs_rs_key_confusion_is_refused(svc, rsa_key):
    """The classic confusion: HS256 "signed" with a public key an attacker knows."""
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64({"alg": "HS256", "typ": "JWT"})
    body = b64(claims(role="admin"))
    import hashlib
    import hmac

    sig = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    rejected(svc, f"{header}.{body}.{b64(sig)}")


def test_key_choosing_headers_are_ignored(svc, rsa_key):
    attacker_secret = "attacker-controlled-secret-" + "a" * 32
    for headers in ({"kid": "../../dev/null"}, {"jku": "https://evil.example/jwks.json"},
                    {"x5u": "https://evil.example/cert.pem"}, {"jwk": {"kty": "oct", "k": b64(attacker_secret.encode())}}):
        rejected(svc, jwt.encode(claims(), attacker_secret, algorithm="HS256", headers=headers))


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"}, {"aud": ...}, {"iss": "evil"}, {"iss": ...},
        {"typ": "refresh"}, {"typ": "id"}, {"typ": ...}, {"sub": ...}, {"exp": ...}, {"iat": ...},
        {"sub": "not-a-uuid"}, {"sub": 12345}, {"sub": None}, {"sid": 42}, {"sid": "nope"},
        {"iat": int(time.time()) + 3600, "nbf": int(time.time())},
        {"nbf": int(time.time()) + 3600}, {"iat": "yesterday"}, {"exp": "tomorrow"},
    ],
    ids=lambda o: ",".join(f"{k}={v!r}" for k, v in o.items()),
)
def test_wrong_claims_are_refused(svc, overrides):
    rejected(svc, jwt.encode(claims(**overrides), SECRET, algorithm="HS256"))


def test_expired_token(svc):
    long_ago = int(time.time()) - 7200
    rejected(svc, jwt.encode(claims(iat=long_ago, nbf=long_ago, exp=long_ago + 900), SECRET, algorithm="HS256"),
             "token_expired")
    # our own issued token, seen after its lifetime (plus the 30 s leeway)
    old = svc.issue_access(Principal(user_id=uuid.uuid4()), now=time.time() - 900 - 31)
    rejected(svc, old, "token_expired")
    # an expired token with a bad signature is not even worth a "refresh it" hint
    rejected(svc, jwt.encode(claims(exp=long_ago), "some-other-secret-" + "x" * 32, algorithm="HS256"))


def test_tampered_tokens_are_refused(svc):
    token = svc.issue_access(Principal(user_id=uuid.uuid4(), role="user"))
    header, body, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    rejected(svc, f"{header}.{body}.{flipped}")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["role"] = "admin"
    rejected(svc, f"{header}.{b64(payload)}.{sig}")
    rejected(svc, f"{header}.{body}.")
    rejected(svc, f"{header}.{body}")
    rejected(svc, jwt.encode(claims(), "a-different-secret-of-enough-length-000", algorithm="HS256"))


@pytest.mark.parametrize("garbage", ["", ".", "..", "a.b.c", "not a jwt", "eyJ" + "A" * 5000, "\u00e9.\u00e9.\u00e9",
                                     "e30.e30.e30", b64({"alg": "HS256"}) + "." + b64(b"[1,2,3]") + ".x"])
def test_garbage_is_refused(svc, garbage):
    rejected(svc, garbage)


def test_refresh_token_is_not_an_access_token(svc):
    import secrets

    rejected(svc, secrets.token_urlsafe(32))


def test_secret_must_be_long_enough():
    with pytest.raises(ValueError):
        TokenService(secret="short", issuer=ISS, audience=AUD, access_ttl_seconds=900)


def test_the_verification_cache_still_expires_tokens():
    """Verified tokens are cached per process (ticket-drop hot path); expiry is re-checked on every hit."""
    svc = TokenService(secret=SECRET, issuer=ISS, audience=AUD, access_ttl_seconds=900)
    # exp lies 28.5-29.5 s in the past: still inside the 30 s leeway, so it verifies (and is cached) ...
    token = svc.issue_access(Principal(user_id=uuid.uuid4()), now=time.time() - 900 - 28.5)
    svc.verify_access(token)
    svc.verify_access(token)
    deadline = time.monotonic() + 3
    while True:  # ... and within about a second the cached entry must stop being accepted
        try:
            svc.verify_access(token)
        except FoyerError as exc:
            assert exc.code == "token_expired"
            break
        assert time.monotonic() < deadline, "a cached token outlived its exp"
        time.sleep(0.05)
    # a tampered twin of a cached token is a different string: fully verified, refused
    good = svc.issue_access(Principal(user_id=uuid.uuid4()))
    svc.verify_access(good)
    header, body, sig = good.split(".")
    middle = len(sig) // 2  # not the last character: its low bits are base64 padding
    rejected(svc, f"{header}.{body}.{sig[:middle]}{'A' if sig[middle] != 'A' else 'B'}{sig[middle + 1:]}")
