"""Helpers for the Q&A, polls and networking tests: nodes, users with roles, clients."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson

from tests.live.helpers import Client, create_event, create_session, grant

__all__ = ["Client", "create_event", "create_session", "grant", "err", "eventually", "connect", "fetch"]


def err(ack: dict) -> str:
    assert ack["ok"] is False, ack
    return ack["error"]["code"]


async def eventually(predicate: Callable[[], Any], *, within: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def connect(url: str, user: Any) -> Client:
    c = Client(url, user.access_token, user)
    await c.connect()
    return c


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                                  schema="pg_catalog")
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()
