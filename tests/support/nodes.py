"""Foyer nodes as real, separate processes (`python run.py serve`), for multi-node tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    port: int
    process: asyncio.subprocess.Process
    log_path: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: the node dies mid-flight, like a crashed machine."""
        if self.process.returncode is None:
            self.process.kill()

    async def stop(self, timeout: float = 15) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


class NodeFactory:
    def __init__(self, *, root: Path, base_env: dict[str, str], log_dir: Path) -> None:
        self.root = root
        self.base_env = base_env
        self.log_dir = log_dir
        self.nodes: list[Node] = []

    async def start(self, *, port: int | None = None, env: dict[str, str] | None = None,
                    ready_timeout: float = 30) -> Node:
        port = port or free_port()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FOYER_")}
        full_env.update(self.base_env)
        full_env.update(env or {})
        full_env["FOYER_PORT"] = str(port)
        full_env["FOYER_NODE_ID"] = f"test-node-{port}"
        log_path = self.log_dir / f"node-{port}.log"
        log_file = log_path.open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(self.root / "run.py"), "serve", cwd=str(self.root), env=full_env,
            stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )
        scheme = "https" if full_env.get("FOYER_TLS_CERT") else "http"
        node = Node(port=port, process=process, log_path=log_path, scheme=scheme)
        self.nodes.append(node)
        await self.wait_ready(node, ready_timeout)
        return node

    async def wait_ready(self, node: Node, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        # Test certificates are self-signed: readiness does not verify them.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
            while True:
                if node.process.returncode is not None:
                    raise RuntimeError(f"node on {node.port} exited:\n{node.log()}")
                try:
                    async with session.get(node.url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"node on {node.port} not ready in {timeout}s:\n{node.log()}")
                await asyncio.sleep(0.1)

    async def stop_all(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
