"""Plain-SQL migrations, applied in order and recorded, safe when several nodes start at once.

Files are `storage/migrations/NNNN_name.sql`, applied in ascending NNNN order, each inside its own
transaction, and recorded in `schema_migrations` with a checksum. A session-level advisory lock
serialises concurrent migrators: the second node waits, then finds nothing left to do. Editing an
applied migration is detected (checksum mismatch) and stops start-up; write a new migration.

Number ranges keep capabilities apart: 0001-0099 foundation, 0100-0199 ticketing,
0200-0299 live rooms, 0300-0399 reach (outbox relay, push, email, analytics).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger("foyer.migrate")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x466F796572  # "Foyer": the advisory lock all migrators share
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise RuntimeError(f"migration file name must be NNNN_name.sql: {path.name}")
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two migrations share number {version:04d}: {found[version].name}, {path.name}")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


async def migrate(dsn: str, *, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied by this call (empty when up to date)."""
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version int PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")}
            for m in migrations:
                if m.version in done:
                    if done[m.version]["checksum"] != m.checksum:
                        raise RuntimeError(
                            f"migration {m.version:04d}_{m.name} changed after it was applied; "
                            "write a new migration instead"
                        )
                    continue
                log.info("applying migration %04d_%s", m.version, m.name)
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version, m.name, m.checksum,
                    )
                applied_now.append(f"{m.version:04d}_{m.name}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return applied_now
