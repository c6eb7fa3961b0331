"""The embedded default: `run.py serve` with no database/redis URLs starts PostgreSQL + Valkey under
the data dir, stops them on Ctrl-C, and finds its data again on the next start."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from pathlib import Path

import psutil
import pytest

from tests.support.api import Api
from tests.support.nodes import NodeFactory

pytestmark = pytest.mark.multinode


def _children_using(data_dir) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(data_dir) in cmdline and ("postgres" in cmdline or "valkey" in cmdline):
            found.append(proc)
    return found


async def _interrupt(node) -> int:
    node.process.send_signal(signal.SIGINT)
    return await asyncio.wait_for(node.process.wait(), 30)


async def test_embedded_default_restarts_with_data_intact(http):
    from tests.conftest import ROOT

    # Not pytest's tmp_path: concurrent pytest runs rotate /tmp/pytest-of-<user>, and the embedded
    # PostgreSQL runs as its own system user, which needs a stable, traversable directory.
    tmp_path = Path(tempfile.mkdtemp(prefix="foyer-embedded-"))
    data_dir = tmp_path / "var"
    factory = NodeFactory(root=ROOT, base_env={"FOYER_DATA_DIR": str(data_dir)}, log_dir=tmp_path)
    try:
        node = await factory.start(ready_timeout=60)
        api = Api(node.url, http)
        user = await api.register("Embedded")
        assert (data_dir / "secrets" / "jwt_secret").exists()
        assert await _interrupt(node) == 0, node.log()
        await asyncio.sleep(0.5)
        assert _children_using(data_dir) == [], "embedded servers must stop with the node"

        node = await factory.start(ready_timeout=60)
        api = Api(node.url, http)
        status, body = await api.login(user)
        assert status == 200, body
        # The access token issued before the restart is still valid: the generated key was kept.
        status, me = await api.get("/api/me", user=user)
        assert status == 200 and me["id"] == user.id
        assert await _interrupt(node) == 0
    finally:
        await factory.stop_all()
        for proc in _children_using(data_dir):
            proc.kill()
        shutil.rmtree(tmp_path, ignore_errors=True)
