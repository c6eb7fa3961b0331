"""Migrations: idempotent, recorded, and safe when two nodes migrate at once."""

from __future__ import annotations

import asyncio

import asyncpg

from storage.migrate import discover, migrate
from tests.support.services import create_database, drop_database, unique


async def test_concurrent_migrations_apply_once(test_services):
    name = unique("foyer_mig")
    await create_database(test_services.admin_dsn, name)
    dsn = test_services.dsn_for(name)
    try:
        results = await asyncio.gather(*(migrate(dsn) for _ in range(3)))
        applied = [r for r in results if r]
        assert len(applied) == 1
        assert applied[0] == [f"{m.version:04d}_{m.name}" for m in discover()]
        assert await migrate(dsn) == []
        conn = await asyncpg.connect(dsn)
        try:
            count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        finally:
            await conn.close()
        assert count == len(discover())
    finally:
        await drop_database(test_services.admin_dsn, name)
