"""Helpers for live-room tests: events and roles seeded in PostgreSQL, richer Socket.IO clients."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.support.live import LiveClient

_n = itertools.count()


async def create_event(dsn: str, owner_id: str, *, live_access: str = "ticket_holders",
                       status: str = "published") -> str:
    """An event owned by `owner_id` (an organizer), published unless told otherwise."""
    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        event_id = await conn.fetchval(
            """INSERT INTO events (owner_id, slug, title, starts_at, ends_at, status, live_access, published_at)
               VALUES ($1, $2, 'Live test', $3, $4, $5, $6, CASE WHEN $5 = 'published' THEN now() END)
               RETURNING id""",
            uuid.UUID(owner_id), f"live-{next(_n)}-{uuid.uuid4().hex[:8]}", now, now + timedelta(days=1),
            status, live_access,
        )
        await conn.execute(
            "INSERT INTO event_members (event_id, user_id, role) VALUES ($1, $2, 'organizer')", event_id,
            uuid.UUID(owner_id))
        return str(event_id)
    finally:
        await conn.close()


async def grant(dsn: str, event_id: str, user_id: str, role: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO event_members (event_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            uuid.UUID(event_id), uuid.UUID(user_id), role)
    finally:
        await conn.close()


async def create_session(dsn: str, event_id: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        return str(await conn.fetchval(
            """INSERT INTO sessions (event_id, title, starts_at, ends_at) VALUES ($1, 'Keynote', $2, $3)
               RETURNING id""", uuid.UUID(event_id), now, now + timedelta(hours=1)))
    finally:
        await conn.close()


class Client(LiveClient):
    """A LiveClient with helpers: join, send, and waiting for room events by seq."""

    def __init__(self, url: str, token: str | None, user: Any = None) -> None:
        super().__init__(url, token)
        self.user = user

    async def join(self, room: str, **extra: Any) -> dict:
        ack = await self.call("room:join", {"room": room, **extra})
        assert ack["ok"], ack
        return ack

    async def send(self, room: str, text: str, client_id: str | None = None, **extra: Any) -> dict:
        return await self.call("chat:send", {"room": room, "text": text,
                                             "client_id": uuid.uuid4().hex if client_id is None else client_id, **extra})

    def room_events(self, room: str) -> list[tuple[str, dict]]:
        out = []
        for name, items in self.events.items():
            for data in items:
                if isinstance(data, dict) and data.get("room") == room and "seq" in data and name != "presence:update":
                    out.append((name, data))
        out.sort(key=lambda x: x[1]["seq"])
        return out

    def seqs(self, event: str) -> list[int]:
        return [d["seq"] for d in self.events.get(event, [])]

    async def wait_until(self, predicate, *, within: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError("condition not met in time; events: "
                                     + repr({k: len(v) for k, v in self.events.items()}))
            await asyncio.sleep(0.02)

    async def wait_messages(self, n: int, *, within: float = 10.0) -> list[dict]:
        await self.wait_until(lambda: len(self.events.get("chat:message", [])) >= n, within=within)
        return self.events["chat:message"]
