"""The PostgreSQL pool and named transactions.

Guarantees:
- Every multi-step write runs inside `Database.transaction(name)`: one asyncpg transaction,
  committed when the block exits normally, rolled back on any exception (including
  cancellation). Nothing is half-written.
- Every connection carries `statement_timeout` and `lock_timeout` from settings, so a stuck
  query or a lock convoy fails fast (as `busy`) instead of holding the pool.
- Pooled connections carry no session state between acquirers: code never SETs session
  variables, LISTENs, takes session-level advisory locks or keeps cursors WITH HOLD on a pooled
  connection (those use a dedicated `asyncpg.connect`, e.g. migrations and the relay's LISTEN).
  So a released connection is not sent asyncpg's default reset query (`pg_advisory_unlock_all();
  CLOSE ALL; UNLISTEN *; RESET ALL`) — one round trip per acquire saved on every hot path;
  an open transaction is still rolled back (asyncpg always does that).
- Transaction names feed an optional observer (the server wires it to Prometheus) so slow or
  failing transactions are visible by name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg
import orjson

from domain.errors import FoyerError

log = logging.getLogger("foyer.db")

Isolation = Literal["read_committed", "repeatable_read", "serializable"]
TransactionObserver = Callable[[str, float, bool], None]

# SQLSTATEs that mean "try again later" rather than "your request is wrong".
_BUSY_SQLSTATES = {
    "55P03",  # lock_not_available (lock_timeout)
    "57014",  # query_canceled (statement_timeout)
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "53300",  # too_many_connections
}


async def _init_connection(conn: asyncpg.Connection) -> None:
    """JSON/JSONB as Python objects via orjson on every pooled connection."""
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


class PooledConnection(asyncpg.Connection):
    """A pooled connection released without the session-reset round trip (see module doc)."""

    def get_reset_query(self) -> str:
        return ""


class Database:
    """An asyncpg pool plus the named-transaction helper. One per node."""

    def __init__(self, pool: asyncpg.Pool, *, observer: TransactionObserver | None = None) -> None:
        self.pool = pool
        self.observer = observer

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 20,
        statement_timeout_ms: int = 15_000,
        lock_timeout_ms: int = 3_000,
        application_name: str = "foyer",
        observer: TransactionObserver | None = None,
    ) -> Database:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            connection_class=PooledConnection,
            server_settings={
                "application_name": application_name[:63],
                "statement_timeout": str(statement_timeout_ms),
                "lock_timeout": str(lock_timeout_ms),
                "idle_in_transaction_session_timeout": str(max(statement_timeout_ms * 2, 60_000)),
                "timezone": "UTC",
            },
        )
        return cls(pool, observer=observer)

    async def close(self, timeout: float = 10.0) -> None:
        """Close the pool. asyncpg waits for every acquired connection to be released; one that a
        leaked task still holds would make shutdown wait forever, so after `timeout` the rest are
        terminated (logged)."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout)
        except TimeoutError:
            log.warning("PostgreSQL pool: connections still in use after %.0f s at shutdown; terminating", timeout)
            self.pool.terminate()

    @asynccontextmanager
    async def transaction(
        self, name: str, *, isolation: Isolation = "read_committed", readonly: bool = False
    ) -> AsyncIterator[asyncpg.Connection]:
        """Run a block as one named transaction; yields the connection to use inside it."""
        try:
            async with self.pool.acquire() as conn, self.named(name, conn, isolation=isolation, readonly=readonly):
                yield conn
        except asyncpg.PostgresError as exc:  # from acquiring (e.g. too many connections)
            raise translate_pg_error(exc, name) from exc

    @asynccontextmanager
    async def named(self, name: str, conn: asyncpg.Connection, *, isolation: Isolation = "read_committed",
                    readonly: bool = False) -> AsyncIterator[None]:
        """A transaction on `conn`, timed for the observer under `name`; PostgreSQL's "try again"
        errors become `busy`."""
        started = time.perf_counter()
        ok = False
        try:
            async with conn.transaction(isolation=isolation, readonly=readonly):
                yield
            ok = True
        except asyncpg.PostgresError as exc:
            raise translate_pg_error(exc, name) from exc
        finally:
            if self.observer is not None:
                self.observer(name, time.perf_counter() - started, ok)

    def dedicated(self, name: str) -> DedicatedTransactions:
        """Named transactions that always run on one kept connection (see DedicatedTransactions)."""
        return DedicatedTransactions(self, name)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection in autocommit mode (single statements, reads)."""
        try:
            async with self.pool.acquire() as conn:
                yield conn
        except asyncpg.PostgresError as exc:
            raise translate_pg_error(exc, "autocommit") from exc

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return await conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        async with self.connection() as conn:
            return await conn.execute(sql, *args)

    async def ping(self) -> None:
        await self.fetchval("SELECT 1")


class DedicatedTransactions:
    """Transactions of ONE sequential user (e.g. the hold batcher, one batch at a time) on one
    pooled connection it keeps, so that the prepared statements of its hot path are planned once
    instead of once per pooled connection. A broken connection is released and replaced by the
    next transaction; `close()` gives it back to the pool. Not for concurrent use."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self._conn: asyncpg.Connection | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        if self._conn is None or self._conn.is_closed():
            await self.close()
            self._conn = await self.db.pool.acquire()
        conn = self._conn
        try:
            async with self.db.named(self.name, conn):
                yield conn
        except (asyncpg.InterfaceError, OSError):
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.db.pool.release(conn)


def translate_pg_error(exc: asyncpg.PostgresError, where: str) -> Exception:
    """Map lock/statement timeouts and serialization failures to `busy`; leave the rest alone."""
    if getattr(exc, "sqlstate", None) in _BUSY_SQLSTATES:
        return FoyerError("busy", "the server is busy, try again", details={"retry_after": 1})
    return exc
