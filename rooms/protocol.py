"""Client → server payloads of the /live namespace, and the handler wrapper every event uses.

Every event validates its payload with msgspec (unknown fields rejected) and answers with an
ack: `{"ok": true, ...}` or `{"ok": false, "error": {"code", "message", "details"?}}` — the
codes are in domain/errors.py and docs/protocol.md. A handler never raises to python-socketio.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from redis import exceptions as redis_exceptions

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


# Socket events handled at once per node. A keynote join storm queues here instead of
# exhausting the Redis (64) and PostgreSQL pools; the wait is backpressure, not an error.
MAX_CONCURRENT_EVENTS = 48
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def event_handler(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap a socket event handler: bounded concurrency per node, and every failure becomes an
    error ack, never an exception (`unavailable` when Redis cannot be reached)."""

    @functools.wraps(fn)
    async def wrapper(sid: str, data: Any = None, *rest: Any) -> Any:
        loop = asyncio.get_running_loop()
        slots = _slots.get(loop)
        if slots is None:
            slots = _slots[loop] = asyncio.Semaphore(MAX_CONCURRENT_EVENTS)
        try:
            async with slots:
                return await fn(sid, data)
        except FoyerError as exc:
            return exc.as_ack()
        except (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError):
            log.warning("socket event %s: Redis unavailable", fn.__name__, exc_info=True)
            return FoyerError("unavailable", "live rooms are temporarily unavailable, retry",
                              details={"retry_after": 1}).as_ack()
        except Exception:
            log.exception("socket event %s failed", fn.__name__)
            return FoyerError("internal_error", "something went wrong").as_ack()

    return wrapper
