"""Who gets a notification, on which channel: preferences, quiet hours, in-app vs push.

Rules (per recipient):
1. The kind must be switched on in the user's push preferences (`push_kinds`; they govern both
   in-app and push notifications), else nothing is sent.
2. A user who is online (a live Socket.IO connection on any node) gets the in-app notification
   only; push is added when they asked for both (`in_app_and_push`). An offline user gets push.
3. Push during the user's quiet hours is deferred to the end of the window, and dropped if the
   notification expires first.
4. Idempotent per notification key: enqueueing the same key twice adds nothing (the push queue
   is unique on (key, device)); the in-app payload carries `id` = the key so clients drop a
   repeat after an at-least-once redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from domain.notify.push import PushWorker
from domain.services import Core
from storage import devices as devices_store
from storage import notify as store

log = logging.getLogger("foyer.notify")

IN_APP_CONCURRENCY = 32  # in-app emits in flight per notification (each is a durable room append)


class InAppChannel(Protocol):
    """The live-room side: presence across nodes and emits to `user:{id}` (implemented in rooms/)."""

    async def online_users(self, user_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]: ...

    async def send(self, user_id: uuid.UUID, payload: dict[str, Any]) -> None: ...


class NoInApp:
    """Used until a live channel is wired: nobody is online, nothing is emitted."""

    async def online_users(self, user_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return set()

    async def send(self, user_id: uuid.UUID, payload: dict[str, Any]) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Notification:
    key: str  # unique per notification (an outbox event id, plus a suffix when one event fans out)
    kind: str  # one of preferences.PUSH_KINDS
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None
    urgent: bool = False
    collapse_key: str | None = None

    def in_app_payload(self) -> dict[str, Any]:
        return {"id": self.key, "kind": self.kind, "title": self.title, "body": self.body, "data": self.data,
                "ts": datetime.now(UTC).isoformat()}

    def push_payload(self) -> dict[str, Any]:
        data = {"kind": self.kind, "notification_id": self.key, **self.data}
        return {"title": self.title, "body": self.body, "data": data, "collapse_key": self.collapse_key,
                "urgent": self.urgent}


@dataclass(slots=True)
class DispatchReport:
    in_app: list[uuid.UUID] = field(default_factory=list)
    push_users: list[uuid.UUID] = field(default_factory=list)
    push_enqueued: int = 0
    deferred: int = 0
    muted: list[uuid.UUID] = field(default_factory=list)


class Notifier:
    def __init__(self, core: Core, worker: PushWorker, in_app: InAppChannel | None = None) -> None:
        self.core = core
        self.worker = worker
        self.in_app: InAppChannel = in_app or NoInApp()

    async def notify(self, n: Notification, user_ids: Sequence[uuid.UUID], *,
                     now: datetime | None = None) -> DispatchReport:
        report = DispatchReport()
        users = list(dict.fromkeys(user_ids))
        if not users:
            return report
        now = now or datetime.now(UTC)
        if n.expires_at is not None and n.expires_at <= now:
            return report
        pool = self.core.db.pool
        prefs = await store.get_preferences_many(pool, users)
        wanted = [u for u in users if prefs[u].wants_push(n.kind)]
        report.muted = [u for u in users if u not in set(wanted)]
        online = await self._online(wanted)
        push_users = [u for u in wanted if u not in online or prefs[u].in_app_and_push]
        rows: list[devices_store.PushRow] = []
        if push_users and self.worker.enabled:
            for device in await devices_store.list_for_users(pool, push_users):
                quiet_end = prefs[device.user_id].quiet_until(now)
                if quiet_end is not None:
                    if n.expires_at is not None and quiet_end >= n.expires_at:
                        continue  # it would be stale by the time quiet hours end
                    report.deferred += 1
                rows.append(devices_store.PushRow(user_id=device.user_id, device_id=device.id, not_before=quiet_end,
                                          expires_at=n.expires_at))
            async with self.core.db.transaction("notify_enqueue_push") as conn:
                report.push_enqueued = await devices_store.enqueue_push(
                    conn, dedupe_key=n.key, kind=n.kind, payload=n.push_payload(), rows=rows)
            if report.push_enqueued:
                self.worker.wake()
        report.push_users = push_users
        payload = n.in_app_payload()
        limit = asyncio.Semaphore(IN_APP_CONCURRENCY)

        async def send(user_id: uuid.UUID) -> None:
            async with limit:
                try:
                    await self.in_app.send(user_id, payload)
                    report.in_app.append(user_id)
                except Exception:  # best effort: the push (if any) is already queued
                    log.warning("in-app notification to %s failed", user_id, exc_info=True)

        await asyncio.gather(*(send(u) for u in wanted if u in online))
        return report

    async def _online(self, users: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not users:
            return set()
        try:
            return set(await self.in_app.online_users(users))
        except Exception:  # presence unknown: treat as offline, so they still get a push
            log.warning("presence lookup failed; treating users as offline", exc_info=True)
            return set()
