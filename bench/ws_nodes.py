#!/usr/bin/env python3
"""The services and nodes of the WebSocket benches (bench/fanout_bench.py, bench/idle_bench.py):
`Services` (a fresh PostgreSQL database, a unique Redis prefix, a JWT secret, users, an event and
their access tokens, all removed at the end), starting and stopping Foyer nodes or the baseline,
and waiting for a node's `GET /healthz`.

The baseline is a plain python-socketio app with `AsyncRedisManager`, as its documentation shows;
`start_servers("baseline", ...)` runs this file as a script in its own process:

    python bench/ws_nodes.py _baseline PORT REDIS_URL CHANNEL

Settings: FOYER_BENCH_DATABASE_URL / FOYER_TEST_DATABASE_URL (admin DSN, default
postgresql://postgres@127.0.0.1:5432/postgres), FOYER_BENCH_REDIS_URL / FOYER_TEST_REDIS_URL
(default redis://127.0.0.1:6379/0); FOYER_BENCH_NODE_ENTRY runs the Foyer nodes through a wrapper.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NAMESPACE = "/live"
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# The baseline: a plain python-socketio app, as its documentation shows
# ------------------------------------------------------------------------------------------------

def run_baseline(port: int, redis_url: str, channel: str) -> None:
    import socketio
    from aiohttp import web

    mgr = socketio.AsyncRedisManager(redis_url, channel=channel)
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=mgr)
    app = web.Application()
    sio.attach(app)

    @sio.on("connect", namespace=NAMESPACE)
    async def connect(sid, environ, auth=None):
        return True

    @sio.on("join", namespace=NAMESPACE)
    async def join(sid, data):
        await sio.enter_room(sid, data["room"], namespace=NAMESPACE)
        return {"ok": True}

    @sio.on("chat:send", namespace=NAMESPACE)
    async def chat_send(sid, data):
        msg = {"id": data["client_id"], "text": data["text"], "ts": int(time.time() * 1000)}
        await sio.emit("chat:message", msg, room=data["room"], namespace=NAMESPACE)
        return {"ok": True}

    async def healthz(request):
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)
    try:
        import uvloop  # same event loop as Foyer nodes, for a fair comparison

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ------------------------------------------------------------------------------------------------
# Services and nodes
# ------------------------------------------------------------------------------------------------

class Services:
    """A fresh database (migrated), a unique Redis key prefix and the nodes' secrets for one bench
    run; `teardown()` drops the database and the prefix's keys."""

    def __init__(self) -> None:
        self.admin_dsn = (os.environ.get("FOYER_BENCH_DATABASE_URL") or os.environ.get("FOYER_TEST_DATABASE_URL")
                          or "postgresql://postgres@127.0.0.1:5432/postgres")
        self.redis_url = (os.environ.get("FOYER_BENCH_REDIS_URL") or os.environ.get("FOYER_TEST_REDIS_URL")
                          or "redis://127.0.0.1:6379/0")
        self.db_name = f"foyer_bench_{os.getpid()}_{secrets.token_hex(3)}"
        self.prefix = f"foyerbench{os.getpid()}{secrets.token_hex(3)}:"
        self.jwt_secret = secrets.token_urlsafe(48)
        from cryptography.fernet import Fernet

        self.fernet = Fernet.generate_key().decode()
        self.tmp = Path(tempfile.mkdtemp(prefix="foyer-bench-"))
        self.extra_env: dict[str, str] = {}

    @property
    def dsn(self) -> str:
        from urllib.parse import urlsplit, urlunsplit

        p = urlsplit(self.admin_dsn)
        return urlunsplit((p.scheme, p.netloc, "/" + self.db_name, p.query, p.fragment))

    async def setup(self, n_users: int) -> tuple[str, list[str]]:
        import asyncpg

        from storage.migrate import migrate

        conn = await asyncpg.connect(self.admin_dsn)
        await conn.execute(f'CREATE DATABASE "{self.db_name}"')
        await conn.close()
        await migrate(self.dsn)
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                """INSERT INTO users (email, name, password_hash)
                   SELECT 'bench' || i || '@example.org', 'Bench ' || i, 'not-a-hash'
                     FROM generate_series(1, $1) i RETURNING id""", n_users)
            ids = [str(r["id"]) for r in rows]
            event_id = await conn.fetchval(
                """INSERT INTO events (owner_id, slug, title, starts_at, ends_at, status, live_access, published_at)
                   VALUES ($1, $2, 'Keynote', now(), now() + interval '1 day', 'published', 'public', now())
                   RETURNING id""", uuid.UUID(ids[0]), f"bench-{secrets.token_hex(4)}")
        finally:
            await conn.close()
        return str(event_id), ids

    def tokens(self, user_ids: list[str]) -> list[str]:
        from config import load_settings
        from domain.identity import Principal
        from domain.tokens import TokenService

        auth = load_settings({}, overrides={"jwt_secret": self.jwt_secret}).auth
        svc = TokenService(secret=self.jwt_secret, issuer=auth.jwt_issuer, audience=auth.jwt_audience,
                           access_ttl_seconds=3600)
        return [svc.issue_access(Principal(user_id=uuid.UUID(u))) for u in user_ids]

    def node_env(self, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOYER_")}
        env.update({
            "FOYER_DATABASE_URL": self.dsn, "FOYER_REDIS_URL": self.redis_url, "FOYER_REDIS_PREFIX": self.prefix,
            "FOYER_JWT_SECRET": self.jwt_secret, "FOYER_ENCRYPTION_KEYS": self.fernet,
            "FOYER_DATA_DIR": str(self.tmp), "FOYER_PORT": str(port), "FOYER_NODE_ID": f"bench-{port}",
            "FOYER_LOG_LEVEL": "WARNING", "FOYER_DB_POOL_MAX": "20",
            # the benchmark's senders post far faster than a person may
            "FOYER_LIVE_CHAT_RATE_LIMIT": "1000000", "FOYER_LIVE_ACTION_RATE_LIMIT": "1000000",
        })
        env.update(extra or {})
        return env

    async def teardown(self) -> None:
        import asyncpg
        import redis.asyncio as aioredis

        try:
            conn = await asyncpg.connect(self.admin_dsn)
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            await conn.close()
        except Exception as exc:
            print(f"(could not drop {self.db_name}: {exc})")
        r = aioredis.Redis.from_url(self.redis_url)
        keys = [k async for k in r.scan_iter(match=self.prefix + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await r.delete(*keys[i:i + 1000])
        await r.aclose()


async def wait_http(port: int, proc: subprocess.Popen, within: float = 60) -> None:
    import aiohttp

    deadline = time.time() + within
    async with aiohttp.ClientSession() as s:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server on {port} exited with {proc.returncode}")
            try:
                async with s.get(f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"server on {port} not up in {within}s")


def start_servers(kind: str, svc: Services, n: int = 2) -> list[tuple[int, subprocess.Popen]]:
    out = []
    channel = svc.prefix + "baseline"
    for _ in range(n):
        port = free_port()
        log = open(svc.tmp / f"{kind}-{port}.log", "wb")
        if kind == "foyer":
            entry = os.environ.get("FOYER_BENCH_NODE_ENTRY") or str(ROOT / "run.py")  # e.g. a debugging wrapper
            proc = subprocess.Popen([PY, entry, "serve"], cwd=ROOT, env=svc.node_env(port, svc.extra_env),
                                    stdout=log, stderr=subprocess.STDOUT)
        else:
            proc = subprocess.Popen([PY, __file__, "_baseline", str(port), svc.redis_url, channel], cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT)
        out.append((port, proc))
    return out


def stop_servers(servers: list[tuple[int, subprocess.Popen]]) -> None:
    for _, p in servers:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for _, p in servers:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "_baseline":
        run_baseline(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        sys.exit(0)
    sys.exit(f"usage: {sys.argv[0]} _baseline PORT REDIS_URL CHANNEL (run by bench/fanout_bench.py and bench/idle_bench.py)")
