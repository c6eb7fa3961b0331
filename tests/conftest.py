"""Shared fixtures: real PostgreSQL + Redis, an isolated database and key prefix per test, and
Foyer nodes served on real sockets (in-process via aiohttp's test server, or as separate
`run.py serve` processes for multi-node tests)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config import Settings, load_settings  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from tests.support.api import Api  # noqa: E402
from tests.support.nodes import NodeFactory  # noqa: E402
from tests.support.services import (  # noqa: E402
    DatabasePool,
    TestServices,
    create_database,
    drop_database,
    start_test_services,
    unique,
)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict:
    """Tests run on uvloop, like production nodes."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}

TEST_JWT_SECRET = "test-jwt-secret-" + "x" * 32
TEST_ENCRYPTION_KEY = Fernet.generate_key().decode()


@pytest.fixture(scope="session")
def test_services() -> Iterator[TestServices]:
    services = start_test_services()
    yield services
    services.stop()


@pytest.fixture(scope="session")
def template_database(test_services: TestServices) -> Iterator[str]:
    """A migrated database, cloned for every test. One per pytest process."""
    name = unique("foyer_tpl")

    async def make() -> None:
        await create_database(test_services.admin_dsn, name)
        await migrate(test_services.dsn_for(name))

    asyncio.run(make())
    yield name
    asyncio.run(drop_database(test_services.admin_dsn, name))


@pytest.fixture(scope="session")
def database_pool(test_services: TestServices, template_database: str) -> Iterator[DatabasePool]:
    pool = DatabasePool(test_services.admin_dsn, template_database)
    yield pool
    pool.close()


@pytest.fixture
async def database_url(test_services: TestServices, database_pool: DatabasePool) -> AsyncIterator[str]:
    """A fresh, migrated database of its own for this test (dropped in the background after it)."""
    name = await database_pool.acquire()
    yield test_services.dsn_for(name)
    database_pool.release(name)


@pytest.fixture
async def redis_prefix(test_services: TestServices) -> AsyncIterator[str]:
    import redis.asyncio as aioredis

    prefix = unique("foyertest") + ":"
    yield prefix
    client = aioredis.Redis.from_url(test_services.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def make_settings(database_url: str, redis_url: str, redis_prefix: str, data_dir: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "jwt_secret": TEST_JWT_SECRET,
        "encryption_keys": TEST_ENCRYPTION_KEY,
        "data_dir": data_dir,
        "db_pool_max": 10,
    }
    base.update(overrides)
    return load_settings({}, overrides=base)


@pytest.fixture
def settings_factory(database_url: str, test_services: TestServices, redis_prefix: str, tmp_path: Path):
    def factory(**overrides: object) -> Settings:
        return make_settings(database_url, test_services.redis_url, redis_prefix, tmp_path, **overrides)

    return factory


@pytest.fixture
def settings(settings_factory) -> Settings:
    return settings_factory()


@pytest.fixture
def aiohttp_server(database_url, redis_prefix, aiohttp_server):  # noqa: F811 - extends pytest-aiohttp's
    """pytest-aiohttp's server factory, set up after (so torn down before) this test's database and
    Redis prefix: no server outlives the database it uses, whichever fixture started it."""
    return aiohttp_server


@pytest.fixture
async def app_factory(database_url, redis_prefix, aiohttp_server):
    """Start an in-process Foyer node on a real port: `server = await app_factory(settings)`.

    Depends on the database and prefix first so they are torn down after the servers stop."""
    from server.app import create_app

    async def factory(settings: Settings):
        return await aiohttp_server(create_app(settings))

    return factory


@pytest.fixture
async def server(app_factory, settings: Settings):
    """One in-process Foyer node (a real aiohttp server on a loopback port)."""
    return await app_factory(settings)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def api(server, http: aiohttp.ClientSession) -> Api:
    return Api(str(server.make_url("/")), http)


@pytest.fixture
async def db(server):
    """The node's `Database` (for assertions on PostgreSQL state)."""
    from handlers.api import CORE

    return server.app[CORE].db


@pytest.fixture
async def nodes(database_url: str, test_services: TestServices, redis_prefix: str, tmp_path: Path):
    """Start Foyer nodes as separate `run.py serve` processes sharing the test database and Redis."""
    env = {
        "FOYER_DATABASE_URL": database_url,
        "FOYER_REDIS_URL": test_services.redis_url,
        "FOYER_REDIS_PREFIX": redis_prefix,
        "FOYER_JWT_SECRET": TEST_JWT_SECRET,
        "FOYER_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
        "FOYER_DATA_DIR": str(tmp_path),
        "FOYER_DB_POOL_MAX": "10",
    }
    factory = NodeFactory(root=ROOT, base_env=env, log_dir=tmp_path)
    yield factory
    await factory.stop_all()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FOYER_TEST_SKIP_MULTINODE"):
        skip = pytest.mark.skip(reason="FOYER_TEST_SKIP_MULTINODE is set")
        for item in items:
            if "multinode" in item.keywords:
                item.add_marker(skip)
