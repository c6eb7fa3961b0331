"""Wiring of the reach capability: the outbox relay (+ Kafka), the node registry, analytics, admin.

The relay's consumers are gathered from every component's `consumers` factory when this
component's lifespan starts. Reach is mounted last (server/components/__init__.py), so every
other component's lifespan has built its services before its consumers are asked for, and the
relay stops before they do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from domain.consumers import Consumer
from domain.services import Core
from handlers.admin import REACH, ReachState
from integrations.kafka import KafkaConfig, KafkaPublisher
from server.components import Component
from server.relay import Relay, RelayMetrics
from storage import admin as admin_store

log = logging.getLogger("foyer.reach")


def setup(app: web.Application, core: Core) -> None:
    from server.metrics import METRICS

    app[REACH] = ReachState(node_id=core.node_id, metrics=RelayMetrics(app[METRICS].registry))


def gather_consumers(app: web.Application, core: Core) -> list[Consumer]:
    from server.app import COMPONENTS

    consumers: list[Consumer] = []
    for component in app[COMPONENTS]:
        if component.consumers is not None:
            consumers.extend(component.consumers(app, core))
    return consumers


async def _heartbeat_loop(app: web.Application, core: Core, stop: asyncio.Event) -> None:
    """Refresh this node's registry entry until `stop` is set.

    Stops on the event rather than only on cancellation: redis-py can swallow a CancelledError
    that lands inside a pipeline, which would leave a cancelled loop running forever."""
    state = app[REACH]
    interval = core.settings.reach.node_heartbeat_seconds
    info = {"kind": state.kind, "host": socket.gethostname(), "pid": os.getpid(), "started_at": state.started_at,
            "port": core.settings.port if state.kind == "serve" else None}
    failures = 0
    while not stop.is_set():
        try:
            relay = state.relay
            await admin_store.heartbeat(core.redis, core.keys, core.node_id,
                                        {**info, "relay": bool(relay),
                                         "streams": relay.stream_names if relay else []},
                                        ttl=interval * 3)
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
            log.warning("node heartbeat failed", exc_info=failures == 1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def _live_push_loop(core: Core, stop: asyncio.Event) -> None:
    """Every `analytics_live_push_seconds`, one node pushes `analytics:live` (domain.analytics.live)
    to the `staff:{event_id}` room of each event with chat/joins in the last two minutes.
    Ephemeral (not replayed): the next push supersedes it, and the HTTP endpoint has the same."""
    from domain.analytics.live import live_now
    from rooms.broadcast import publish_ephemeral
    from storage import analytics as agg

    interval = core.settings.reach.analytics_live_push_seconds
    failures = 0
    while not stop.is_set():
        try:
            if await admin_store.try_round(core.redis, core.keys("analytics", "live_push"), seconds=interval * 0.9):
                async with core.db.connection() as conn:
                    for event_id in await agg.active_events(conn, seconds=120):
                        figures = await live_now(core, conn, event_id)
                        await publish_ephemeral(core, room=f"staff:{event_id}", event="analytics:live",
                                                data={"event_id": str(event_id), **figures})
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
            log.warning("live analytics push failed", exc_info=failures == 1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def lifespan(app: web.Application, core: Core) -> AsyncIterator[None]:
    state = app[REACH]
    settings = core.settings
    if settings.reach.relay_enabled:
        publisher = KafkaPublisher(KafkaConfig.from_settings(settings)) if settings.kafka_bootstrap else None
        state.relay = Relay(
            db=core.db, dsn=settings.database_url or "", node_id=core.node_id, settings=settings.reach,
            consumers=gather_consumers(app, core), publisher=publisher, metrics=state.metrics,
        )
        await state.relay.start()
    stop = asyncio.Event()
    spawn = asyncio.get_running_loop().create_task
    loops = [spawn(_heartbeat_loop(app, core, stop), name="node-heartbeat")]
    if settings.reach.analytics_live_push_seconds > 0:
        loops.append(spawn(_live_push_loop(core, stop), name="analytics-live-push"))
    try:
        yield
    finally:
        stop.set()
        for task in loops:
            task.cancel()
        await asyncio.wait(loops, timeout=5)
        if state.relay is not None:
            await state.relay.stop()
        with contextlib.suppress(Exception):
            await admin_store.remove_node(core.redis, core.keys, core.node_id)


def consumers(app: web.Application, core: Core) -> list[Consumer]:
    from domain.analytics.consumers import analytics_consumers

    return analytics_consumers(core)


def _routers() -> tuple:
    from handlers import admin, analytics, support

    return (analytics.router, admin.router, support.router)


COMPONENT = Component(name="reach", routers=_routers(), setup=setup, lifespan=lifespan, consumers=consumers)
