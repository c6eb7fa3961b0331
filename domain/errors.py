"""Foyer's error type and the one table that maps error codes to HTTP statuses.

Every failure a client can see is a `FoyerError` with a stable, machine-readable `code`.
HTTP answers `{"error": {"code", "message", "details"?}}` with the status from `HTTP_STATUS`;
Socket.IO acks answer `{"ok": false, "error": {...}}` (see `as_ack`). Codes are part of the
public contract: add new ones, never rename. This module imports nothing from Foyer, so every
layer (storage included) may raise these errors.
"""

from __future__ import annotations

from typing import Any

# code -> HTTP status. One table for the whole product; docs/protocol.md and the OpenAPI
# document list the same codes.
HTTP_STATUS: dict[str, int] = {
    # generic
    "validation_failed": 422,
    "bad_request": 400,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "busy": 503,
    "internal_error": 500,
    "unavailable": 503,
    "rate_limited": 429,
    # authentication / authorization
    "unauthorized": 401,
    "invalid_token": 401,
    "token_expired": 401,
    "invalid_credentials": 401,
    "totp_required": 401,
    "invalid_totp": 401,
    "account_disabled": 403,
    "forbidden": 403,
    "two_factor_required": 403,
    "email_taken": 409,
    # idempotency
    "idempotency_key_reused": 422,
    "idempotency_in_progress": 409,
    # events & schedule
    "schedule_conflict": 409,
    "invalid_state": 409,
    "precondition_failed": 412,
    # ticketing
    "sold_out": 409,
    "hold_expired": 409,
    "sale_not_open": 409,
    "sale_closed": 409,
    "limit_exceeded": 422,
    "seat_unavailable": 409,
    "access_code_required": 403,
    "queue_required": 403,
    "payment_failed": 402,
    "already_paid": 409,
    "invalid_signature": 400,
    # live rooms
    "not_member": 403,
    "muted": 403,
    "banned": 403,
    "slow_mode": 429,
    "message_rejected": 422,
    "already_voted": 409,
    "poll_closed": 409,
    "blocked": 403,  # networking: you block this user
    "opt_in_required": 403,  # networking: join the event's directory first
    # notify (push, email, calendar, sharing, feedback)
    "invalid_link": 400,
    "feedback_not_open": 409,
}


class FoyerError(Exception):
    """A failure with a stable `code`, a human `message` and optional structured `details`.

    `headers` carries protocol hints (e.g. Retry-After for `rate_limited`).
    """

    code: str = "internal_error"

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if self.code not in HTTP_STATUS:
            raise ValueError(f"unknown error code {self.code!r}: add it to domain.errors.HTTP_STATUS")
        self.message = message or self.code.replace("_", " ")
        self.details = details
        self.headers = headers or {}
        super().__init__(f"{self.code}: {self.message}")

    @property
    def status(self) -> int:
        return HTTP_STATUS[self.code]

    def as_payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body

    def as_ack(self) -> dict[str, Any]:
        """The Socket.IO ack for this error: `{"ok": false, "error": {...}}`."""
        return {"ok": False, "error": self.as_payload()}


def not_found(what: str = "resource") -> FoyerError:
    return FoyerError("not_found", f"{what} not found")


def forbidden(message: str = "you may not do this") -> FoyerError:
    return FoyerError("forbidden", message)


def validation_failed(details: list[dict[str, str]], message: str = "request is not valid") -> FoyerError:
    """`details` is a list of `{"field": "<dotted.path>", "message": "..."}`."""
    return FoyerError("validation_failed", message, details=details)


def field_error(field: str, message: str) -> FoyerError:
    return validation_failed([{"field": field, "message": message}])


def rate_limited(retry_after: float, message: str = "too many requests") -> FoyerError:
    seconds = max(1, int(retry_after + 0.999))
    return FoyerError(
        "rate_limited", message, details={"retry_after": seconds}, headers={"Retry-After": str(seconds)}
    )
