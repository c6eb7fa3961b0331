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


class Person:
    """A user inserted straight into PostgreSQL, with an access token minted for the test nodes
    (registration hashes passwords with argon2: too slow for hundreds of voters)."""

    def __init__(self, id: str, name: str, access_token: str) -> None:
        self.id, self.name, self.access_token = id, name, access_token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def bulk_users(dsn: str, n: int, *, event_id: str | None = None, role: str = "attendee",
                     prefix: str = "Voter", names: list[str] | None = None) -> list[Person]:
    import uuid

    from config import load_settings
    from domain.identity import Principal
    from domain.tokens import TokenService
    from tests.conftest import TEST_JWT_SECRET

    auth = load_settings({}, overrides={"jwt_secret": TEST_JWT_SECRET}).auth
    tokens = TokenService(secret=TEST_JWT_SECRET, issuer=auth.jwt_issuer, audience=auth.jwt_audience,
                          access_ttl_seconds=3600)
    ids = [uuid.uuid4() for _ in range(n)]
    names = names or [f"{prefix} {i}" for i in range(n)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """INSERT INTO users (id, email, name, password_hash)
               SELECT i, i::text || '@bulk.example.org', nm, 'x' FROM unnest($1::uuid[], $2::text[]) AS t(i, nm)""",
            ids, names)
        if event_id is not None:
            await conn.execute(
                "INSERT INTO event_members (event_id, user_id, role) SELECT $1, i, $3 FROM unnest($2::uuid[]) AS i",
                uuid.UUID(event_id), ids, role)
    finally:
        await conn.close()
    return [Person(str(i), nm, tokens.issue_access(Principal(user_id=i))) for i, nm in zip(ids, names, strict=True)]
