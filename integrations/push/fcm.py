"""Firebase Cloud Messaging (HTTP v1) adapter on top of `pyfcm`.

pyfcm builds the v1 payload, holds per-thread `requests` sessions and gets OAuth 2.0 access
tokens for the service account through google-auth. It is blocking, so every send runs in a
dedicated thread pool (`threads` workers) and `send_many` never blocks the event loop.

What this adapter changes in pyfcm's behaviour, and why:
- The endpoint (`endpoint` base, default Google's) and the OAuth token URI are configurable, so
  tests run a local server that speaks the v1 protocol (integrations/push/fake_fcm.py).
- pyfcm sleeps inside the call on `Retry-After` and retries 502/503 through urllib3. Here no
  call sleeps or retries: each response is classified (`SendResult`) and the push queue
  reschedules with capped, jittered backoff that honours Retry-After (domain/notify/push.py).
- One access token is shared by all threads (refreshed under a lock when google-auth says it is
  no longer valid) instead of one token per thread.

Classification follows https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode:
UNREGISTERED and SENDER_ID_MISMATCH, and INVALID_ARGUMENT about the token, mean the token is dead
(`INVALID_TOKEN`: delete the device); QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, other 5xx, 401 and
network errors are transient (`RETRY`); anything else is a permanent failure of that message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2 import service_account
from pyfcm import FCMNotification
from requests.adapters import HTTPAdapter

log = logging.getLogger("foyer.push.fcm")

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_TRANSIENT_CODES = {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL", "UNAUTHENTICATED"}
_DEAD_TOKEN_CODES = {"UNREGISTERED", "SENDER_ID_MISMATCH"}


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    INVALID_TOKEN = "invalid_token"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PushMessage:
    token: str
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)
    platform: str = "android"
    collapse_key: str | None = None
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    error_code: str | None = None
    detail: str | None = None
    retry_after: float | None = None
    message_name: str | None = None


def classify(status: int, body: Any, retry_after_header: str | None) -> SendResult:
    """Turn one v1 `messages:send` response into an outcome (pure: unit-testable)."""
    if status == 200:
        name = body.get("name") if isinstance(body, dict) else None
        return SendResult(Outcome.SENT, message_name=name)
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code = error.get("status") or str(status)
    detail = str(error.get("message") or "")[:300]
    token_field_bad = False
    for d in error.get("details") or ():
        if d.get("@type") == _FCM_ERROR_TYPE and d.get("errorCode"):
            code = d["errorCode"]
        if d.get("@type") == _BAD_REQUEST_TYPE:
            token_field_bad |= any(v.get("field") == "message.token" for v in d.get("fieldViolations") or ())
    retry_after = _parse_retry_after(retry_after_header)
    if code in _DEAD_TOKEN_CODES or status == 404:
        return SendResult(Outcome.INVALID_TOKEN, code, detail)
    if code == "INVALID_ARGUMENT" and (token_field_bad or "registration token" in detail.lower()):
        return SendResult(Outcome.INVALID_TOKEN, code, detail)
    if code in _TRANSIENT_CODES or status in (401, 429) or status >= 500:
        return SendResult(Outcome.RETRY, code, detail, retry_after=retry_after)
    return SendResult(Outcome.FAILED, code, detail)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


class _PyFcm(FCMNotification):
    """pyfcm with a configurable endpoint, a shared token and no sleeping retries (see module doc)."""

    def __init__(self, *, credentials: service_account.Credentials, project_id: str, endpoint: str,
                 pool_size: int) -> None:
        super().__init__(
            credentials=credentials, project_id=project_id,
            adapter=HTTPAdapter(max_retries=0, pool_connections=2, pool_maxsize=pool_size),
        )
        self.FCM_END_POINT_BASE = endpoint.rstrip("/")
        self._token_lock = threading.Lock()

    def _get_access_token(self) -> str:
        with self._token_lock:
            if not self.credentials.valid:
                self.credentials.refresh(google.auth.transport.requests.Request())
            return self.credentials.token

    def send_request(self, payload: bytes | None = None, timeout: float | None = None) -> requests.Response:
        response = self.requests_session.post(self.fcm_end_point, data=payload, timeout=timeout)
        if self._is_access_token_expired(response):
            with self._token_lock:
                self.credentials.token = None  # force a refresh on the next header build
            self.thread_local.token_expiry = 0
            response = self.requests_session.post(self.fcm_end_point, data=payload, timeout=timeout)
        return response

    def send_one(self, message: PushMessage, timeout: float) -> SendResult:
        android: dict[str, Any] = {"priority": "high" if message.urgent else "normal"}
        apns: dict[str, Any] = {"headers": {"apns-priority": "10" if message.urgent else "5"}}
        if message.collapse_key:
            android["collapse_key"] = message.collapse_key
            apns["headers"]["apns-collapse-id"] = message.collapse_key[:64]
        try:
            payload = self.parse_payload(
                fcm_token=message.token, notification_title=message.title, notification_body=message.body,
                data_payload={k: str(v) for k, v in message.data.items()} or None,
                android_config=android if message.platform == "android" else None,
                apns_config=apns if message.platform == "ios" else None,
            )
            response = self.send_request(payload, timeout)
        except (requests.RequestException, google.auth.exceptions.GoogleAuthError, OSError) as exc:
            return SendResult(Outcome.RETRY, "NETWORK", f"{type(exc).__name__}: {exc}"[:300])
        try:
            body = response.json()
        except ValueError:
            body = None
        return classify(response.status_code, body, response.headers.get("Retry-After"))


class FcmAdapter:
    """Sends batches of push messages concurrently, off the event loop."""

    def __init__(self, *, credentials_info: dict[str, Any], project_id: str = "", endpoint: str,
                 token_uri: str = "", timeout: float = 10.0, threads: int = 8) -> None:
        info = dict(credentials_info)
        if token_uri:
            info["token_uri"] = token_uri
        credentials = service_account.Credentials.from_service_account_info(info, scopes=[FCM_SCOPE])
        project = project_id or info.get("project_id") or ""
        if not project:
            raise ValueError("FCM project id: set FOYER_FCM_PROJECT_ID or use credentials with project_id")
        self.project_id = project
        self.timeout = timeout
        self._client = _PyFcm(credentials=credentials, project_id=project, endpoint=endpoint, pool_size=threads)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fcm")

    async def send_many(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        """Send each message once; results are in the same order. Never raises for one message."""
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(self._executor, self._client.send_one, m, self.timeout) for m in messages]
        results = await asyncio.gather(*futures, return_exceptions=True)
        out: list[SendResult] = []
        for r in results:
            if isinstance(r, BaseException):
                if isinstance(r, asyncio.CancelledError):
                    raise r
                log.warning("push send crashed: %s", type(r).__name__)
                out.append(SendResult(Outcome.RETRY, "CLIENT", type(r).__name__))
            else:
                out.append(r)
        return out

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
