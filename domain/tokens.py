"""Access tokens: short-lived HS256 JWTs with a pinned algorithm and every claim checked.

Guarantees: `verify_access` accepts only tokens that this deployment signed (`alg` pinned to
HS256 whatever the header says, so `none`, `HS512` and RS/HS key-confusion tokens fail), that
are of type `access` (a refresh token or any other JWT of ours is refused), unexpired (`exp`),
not issued or valid only in the future (`iat`, `nbf`), for this audience (`aud`) and issuer
(`iss`), with a UUID subject. Clock leeway is 30 s either way. Header fields such as `kid`,
`jku`, `x5u` or `jwk` are ignored: the key is never chosen by the token. Anything else is
`invalid_token` (or `token_expired`), never a 500. Tests: tests/domain/test_tokens.py.

Access tokens are short-lived. Signing a session out (logout, password change, an admin
disabling the account, ...) revokes its refresh tokens in PostgreSQL and, through
`is_revoked` (storage/revocations.py: an in-memory set every node keeps in sync over Redis),
refuses the session's access tokens at once on every node, without a per-request lookup.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import jwt

from domain.errors import FoyerError
from domain.identity import Principal

ALGORITHM = "HS256"
_LEEWAY_SECONDS = 30


class TokenService:
    def __init__(self, *, secret: str, issuer: str, audience: str, access_ttl_seconds: int) -> None:
        if len(secret.encode()) < 32:
            raise ValueError("JWT secret must be at least 32 bytes")
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.access_ttl_seconds = access_ttl_seconds
        # Tokens already verified in this process (exact string -> principal, exp): a ticket drop
        # sends the same buyer's token many times; re-checking the HMAC each time was the largest
        # cost of a `sold_out` answer. `exp` (with leeway) is re-checked on every hit.
        self._verified: dict[str, tuple[Principal, float]] = {}
        # Signed-out sessions (storage/revocations.py, wired by the accounts component): an access
        # token of a revoked session is refused before its `exp`. One dict lookup, no I/O.
        self.is_revoked: Callable[[uuid.UUID], bool] | None = None

    def issue_access(self, principal: Principal, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "sub": str(principal.user_id),
            "role": principal.role,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.access_ttl_seconds,
            "iss": self.issuer,
            "aud": self.audience,
            "typ": "access",
            "jti": uuid.uuid4().hex,
        }
        if principal.session_id is not None:
            claims["sid"] = str(principal.session_id)
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_access(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None and time.time() <= hit[1] + _LEEWAY_SECONDS:
            principal = hit[0]
        else:
            if hit is not None:
                del self._verified[token]
            principal, exp = self._verify(token)
            if len(self._verified) >= 20_000:
                self._verified.pop(next(iter(self._verified)))
            self._verified[token] = (principal, exp)
        revoked = self.is_revoked
        if revoked is not None and principal.session_id is not None and revoked(principal.session_id):
            raise FoyerError("invalid_token", "this session was signed out; sign in again")
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise FoyerError("token_expired", "access token expired; refresh it") from None
        except jwt.PyJWTError:
            raise FoyerError("invalid_token", "access token is not valid") from None
        if claims.get("typ") != "access":
            raise FoyerError("invalid_token", "not an access token")
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or iat > time.time() + _LEEWAY_SECONDS:
            raise FoyerError("invalid_token", "token issued in the future")
        sub, sid = claims.get("sub"), claims.get("sid")
        if not isinstance(sub, str) or not (sid is None or isinstance(sid, str)):
            raise FoyerError("invalid_token", "access token is not valid")
        try:
            user_id = uuid.UUID(sub)
            session_id = uuid.UUID(sid) if sid else None
        except ValueError:
            raise FoyerError("invalid_token", "access token is not valid") from None
        role = claims.get("role") if claims.get("role") in ("user", "admin") else "user"
        return Principal(user_id=user_id, role=role, session_id=session_id), float(claims["exp"])
