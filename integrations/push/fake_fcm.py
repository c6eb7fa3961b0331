"""A local FCM-compatible server for tests: the OAuth 2.0 JWT-bearer token endpoint and the HTTP v1
`POST /v1/projects/{project}/messages:send` API, with the real error shapes.

Used only by tests (Google's servers are unreachable here). It checks what the real service
checks that matters to Foyer: the service-account assertion is an RS256 JWT signed by the key
whose public half it was given (iss, aud, scope), sends carry a live bearer token for the right
project, a message has exactly one target and string-only data. Tokens can be scripted:
- `unregistered`: 404 UNREGISTERED (the app was uninstalled);
- tokens starting with "malformed": 400 INVALID_ARGUMENT on `message.token`;
- `fail(token, code, times, retry_after)`: the next `times` sends answer QUOTA_EXCEEDED (429)
  or UNAVAILABLE (503) / INTERNAL (500), with `Retry-After` when given.
Every accepted message is kept in `delivered` (token → list of messages) and `attempts` counts
every send per token.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# google-auth always signs service-account assertions for Google's token endpoint, whatever
# `token_uri` the request is sent to; Google checks this audience.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_STATUS_OF = {"UNREGISTERED": (404, "NOT_FOUND"), "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT"),
              "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED"), "UNAVAILABLE": (503, "UNAVAILABLE"),
              "INTERNAL": (500, "INTERNAL"), "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED")}


def make_service_account(*, project_id: str, token_uri: str) -> tuple[dict[str, Any], bytes]:
    """A fresh service-account JSON (as a dict) and the PEM public key that verifies its assertions."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    info = {
        "type": "service_account", "project_id": project_id, "private_key_id": uuid.uuid4().hex,
        "private_key": private_pem, "client_email": f"foyer-push@{project_id}.iam.gserviceaccount.com",
        "client_id": str(uuid.uuid4().int)[:21], "token_uri": token_uri,
    }
    return info, public_pem


@dataclass
class FakeFcm:
    project_id: str
    public_key_pem: bytes
    client_email: str
    token_ttl: int = 3600
    latency: float = 0.0  # seconds added to every send (real FCM is a WAN round trip away)
    unregistered: set[str] = field(default_factory=set)
    delivered: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    token_requests: int = 0
    _failures: dict[str, list[tuple[str, float | None]]] = field(default_factory=lambda: defaultdict(list))
    _access_tokens: dict[str, float] = field(default_factory=dict)

    def fail(self, token: str, code: str, *, times: int = 1, retry_after: float | None = None) -> None:
        self._failures[token].extend([(code, retry_after)] * times)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        return app

    # --- OAuth 2.0 (RFC 7523 JWT bearer grant) --------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            claims = jwt.decode(str(form.get("assertion", "")), self.public_key_pem, algorithms=["RS256"],
                                audience=GOOGLE_TOKEN_AUDIENCE)
        except jwt.PyJWTError as exc:
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        if claims.get("iss") != self.client_email or "firebase.messaging" not in str(claims.get("scope", "")):
            return web.json_response({"error": "invalid_grant", "error_description": "bad iss/scope"}, status=400)
        self.token_requests += 1
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self._access_tokens[token] = time.time() + self.token_ttl
        return web.json_response({"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"})

    # --- messages:send ------------------------------------------------------------------------

    @staticmethod
    def _error(code: str, message: str, *, retry_after: float | None = None,
               violations: list[dict] | None = None) -> web.Response:
        status, status_name = _STATUS_OF.get(code, (400, code))
        details: list[dict] = [{"@type": _FCM_ERROR, "errorCode": code}]
        if violations:
            details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations})
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
        return web.json_response({"error": {"code": status, "message": message, "status": status_name,
                                            "details": details}}, status=status, headers=headers)

    async def _send(self, request: web.Request) -> web.Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if self._access_tokens.get(token, 0) < time.time():
            return web.json_response({"error": {
                "code": 401, "status": "UNAUTHENTICATED",
                "message": "Request had invalid authentication credentials.",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_EXPIRED"}],
            }}, status=401)
        if request.match_info["project"] != self.project_id:
            return self._error("SENDER_ID_MISMATCH", "project does not match the credentials")
        try:
            body = await request.json()
            message = body["message"]
        except (ValueError, KeyError, TypeError):
            return self._error("INVALID_ARGUMENT", "Invalid JSON payload received.")
        targets = [k for k in ("token", "topic", "condition") if message.get(k)]
        if len(targets) != 1:
            return self._error("INVALID_ARGUMENT", "exactly one of token, topic, condition is required")
        data = message.get("data") or {}
        if not all(isinstance(v, str) for v in data.values()):
            return self._error("INVALID_ARGUMENT", "data values must be strings",
                               violations=[{"field": "message.data", "description": "non-string value"}])
        device = message.get("token", "")
        self.attempts[device] += 1
        if device.startswith("malformed"):
            return self._error("INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
                               violations=[{"field": "message.token", "description": "Invalid registration token"}])
        if device in self.unregistered:
            return self._error("UNREGISTERED", "Requested entity was not found.")
        if self._failures.get(device):
            code, retry_after = self._failures[device].pop(0)
            return self._error(code, f"scripted {code}", retry_after=retry_after)
        if body.get("validate_only"):
            return web.json_response({"name": f"projects/{self.project_id}/messages/fake_validate_only"})
        self.delivered[device].append(message)
        return web.json_response({"name": f"projects/{self.project_id}/messages/{uuid.uuid4().hex}"})
