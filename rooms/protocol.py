"""Client → server payloads of the /live namespace, and the handler wrapper every event uses.

Every event validates its payload with msgspec (unknown fields rejected) and answers with an
ack: `{"ok": true, ...}` or `{"ok": false, "error": {"code", "message", "details"?}}` — the
codes are in domain/errors.py and docs/protocol.md. A handler never raises to python-socketio.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from domain.errors import FoyerError, field_error, validation_failed
from handlers.api import _validation_details

log = logging.getLogger("foyer.rooms")

T = TypeVar("T")

Id = str  # UUIDs travel as strings; `uid()` validates them


class _In(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class JoinIn(_In):
    room: str
    last_seq: int | None = None
    epoch: str | None = None


class RoomIn(_In):
    room: str


class ChatSendIn(_In):
    room: str
    text: str
    client_id: str
    reply_to: Id | None = None


class ChatEditIn(_In):
    room: str
    id: Id
    text: str


class MessageIn(_In):
    room: str
    id: Id


class ChatReactIn(_In):
    room: str
    id: Id
    emoji: str
    on: bool = True


class ChatReportIn(_In):
    room: str
    id: Id
    reason: str = ""


class ChatHistoryIn(_In):
    room: str
    before_seq: int
    limit: int = 50


class SanctionIn(_In):
    room: str
    user_id: Id
    duration_seconds: int | None = None
    reason: str = ""


class UserIn(_In):
    room: str
    user_id: Id


class SlowModeIn(_In):
    room: str
    seconds: int


def decode(typ: type[T], data: Any) -> T:
    if not isinstance(data, dict):
        raise validation_failed([{"field": "payload", "message": "must be a JSON object"}])
    try:
        return msgspec.convert(data, typ)
    except msgspec.ValidationError as exc:
        raise validation_failed(_validation_details(exc, "payload")) from None


def uid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise field_error(field, "must be a UUID") from None


def now_ms() -> int:
    return int(time.time() * 1000)


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def event_handler(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap a socket event handler: every failure becomes an error ack, never an exception."""

    @functools.wraps(fn)
    async def wrapper(sid: str, data: Any = None, *rest: Any) -> Any:
        try:
            return await fn(sid, data)
        except FoyerError as exc:
            return exc.as_ack()
        except Exception:
            log.exception("socket event %s failed", fn.__name__)
            return FoyerError("internal_error", "something went wrong").as_ack()

    return wrapper
