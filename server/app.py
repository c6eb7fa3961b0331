"""`create_app(settings)`: one Foyer node as an aiohttp application with Socket.IO attached.

Start-up order (cleanup contexts, unwound in reverse on shutdown):
1. PostgreSQL pool (after applying pending migrations under the migration advisory lock) and
   the Redis client; readiness checks for both;
2. each component's lifespan (background loops such as sweepers and the outbox relay);
3. the Socket.IO server, already attached to the app's router at creation.

`settings.database_url` and `settings.redis_url` must be set: the embedded default starts its
servers in `run.py` before calling this, so the same code path serves both ways of running.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from config import Settings
from domain.services import Core
from domain.tokens import TokenService
from handlers import system
from handlers.api import CORE, Router
from server.components import Component, all_components
from server.metrics import METRICS, Metrics
from server.middlewares import make_front_door
from server.openapi import build_openapi
from server.realtime import attach, create_sio
from storage.db import Database
from storage.migrate import migrate
from storage.redis import Keyspace, connect_redis

log = logging.getLogger("foyer.app")

VERSION = "0.1.0"
COMPONENTS: web.AppKey[list[Component]] = web.AppKey("foyer.components", list)


def default_node_id(settings: Settings) -> str:
    return settings.node_id or f"{socket.gethostname()}:{settings.port}:{os.getpid()}"


def build_core(settings: Settings) -> Core:
    auth = settings.auth
    if not auth.jwt_secret:
        raise ValueError("settings.auth.jwt_secret is empty; run.py fills it for the embedded default")
    return Core(
        settings=settings,
        keys=Keyspace(settings.redis_prefix),
        tokens=TokenService(
            secret=str(auth.jwt_secret),
            issuer=auth.jwt_issuer,
            audience=auth.jwt_audience,
            access_ttl_seconds=auth.access_token_ttl_seconds,
        ),
        node_id=default_node_id(settings),
    )


def create_app(settings: Settings, *, run_migrations: bool = True) -> web.Application:
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_app needs database_url and redis_url (run.py starts embedded ones)")
    core = build_core(settings)
    metrics = Metrics()
    components = all_components()

    app = web.Application(
        middlewares=[
            make_front_door(settings.trusted_proxies, settings.cors_origins),
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[CORE] = core
    app[METRICS] = metrics
    app[COMPONENTS] = components
    app[system.METRICS_REGISTRY] = metrics.registry
    app[system.READINESS_CHECKS] = {}

    routers: list[Router] = [system.router]
    for component in components:
        if component.setup is not None:
            component.setup(app, core)
        routers.extend(component.routers)
    for router in routers:
        router.mount(app)
    app[system.OPENAPI_DOC] = build_openapi(routers, version=VERSION, server_url=settings.public_url or None)

    async def core_ctx(app: web.Application) -> AsyncIterator[None]:
        dsn = settings.database_url or ""
        if run_migrations:
            applied = await migrate(dsn)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        core.db = await Database.connect(
            dsn,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            lock_timeout_ms=settings.db_lock_timeout_ms,
            application_name=f"foyer {core.node_id}",
            observer=metrics.observe_transaction,
        )
        core.redis = connect_redis(settings.redis_url or "")
        checks = app[system.READINESS_CHECKS]
        checks["postgres"] = core.db.ping
        checks["redis"] = core.redis.ping
        try:
            yield
        finally:
            await core.redis.aclose()
            await core.db.close()

    app.cleanup_ctx.append(core_ctx)
    for component in components:
        if component.lifespan is not None:
            lifespan = component.lifespan

            async def component_ctx(app: web.Application, _lifespan=lifespan) -> AsyncIterator[None]:
                async for _ in _lifespan(app, core):
                    yield

            app.cleanup_ctx.append(component_ctx)

    sio = create_sio(core)
    for component in components:
        if component.socket_setup is not None:
            component.socket_setup(sio, core, app)
    attach(app, sio)

    async def sio_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        # Close every client connection before the pool closes, so in-flight events finish.
        try:
            await sio.shutdown()
        except Exception:  # shutting down; nothing useful to do with a failure here
            log.debug("socket.io shutdown failed", exc_info=True)

    app.cleanup_ctx.append(sio_ctx)
    return app
