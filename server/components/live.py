"""Wiring of the live capability: Socket.IO bindings, the room bus, presence, outbox consumers,
live metrics (including the event loop's lag, which a mass disconnect must not blow up)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator

import socketio
from aiohttp import web
from prometheus_client import Gauge, Histogram

import rooms
import rooms.engage
from domain.consumers import Consumer
from domain.services import Core
from handlers import networking, polls, qa
from handlers.system import READINESS_CHECKS
from rooms.consumers import make_consumers
from rooms.engage import Engagement
from rooms.service import Live
from server.components import Component
from server.metrics import METRICS

LIVE: web.AppKey[Live] = web.AppKey("foyer.live", Live)
ENGAGE: web.AppKey[Engagement] = web.AppKey("foyer.engage", Engagement)  # Q&A, polls, networking

LAG_PROBE_SECONDS = 0.02
LAG_WINDOW_SECONDS = 60.0


class LoopLag:
    """Measures how late the event loop runs a 20 ms timer; keeps the max over the last minute."""

    def __init__(self) -> None:
        self.recent: deque[tuple[float, float]] = deque()

    def max_recent(self) -> float:
        horizon = time.monotonic() - LAG_WINDOW_SECONDS
        while self.recent and self.recent[0][0] < horizon:
            self.recent.popleft()
        return max((lag for _, lag in self.recent), default=0.0)

    async def run(self, histogram: Histogram) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            lag = max(0.0, loop.time() - start - LAG_PROBE_SECONDS)
            histogram.observe(lag)
            if lag > 0.005:
                self.recent.append((time.monotonic(), lag))


def socket_setup(sio: socketio.AsyncServer, core: Core, app: web.Application) -> None:
    live: Live = rooms.setup(sio, core)  # type: ignore[arg-type]
    app[LIVE] = live
    app[ENGAGE] = rooms.engage.bind(live)
    metrics = app[METRICS]
    sio.connect_hooks.append(lambda sid, principal: metrics.socket_connections.inc())  # type: ignore[attr-defined]
    sio.disconnect_hooks.append(lambda sid: metrics.socket_connections.dec())  # type: ignore[attr-defined]


async def lifespan(app: web.Application, core: Core) -> AsyncIterator[None]:
    live = app[LIVE]
    registry = app[METRICS].registry
    lag = LoopLag()
    Gauge("foyer_event_loop_lag_max_seconds", "Largest event-loop lag seen in the last minute",
          registry=registry).set_function(lag.max_recent)
    histogram = Histogram("foyer_event_loop_lag_seconds", "Event-loop lag of a 20 ms timer", registry=registry,
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
    Gauge("foyer_live_rooms", "Live rooms with members on this node", registry=registry).set_function(
        lambda: len(live.rooms))
    Gauge("foyer_live_deliveries", "Room events written to clients by this node (total)",
          registry=registry).set_function(lambda: live.delivered_total())
    Gauge("foyer_live_bus_reconnects", "Times the room bus lost its Redis subscription",
          registry=registry).set_function(lambda: live.bus.reconnects)
    Gauge("foyer_live_bus_canary_failures", "Times the room bus canary did not come back in time",
          registry=registry).set_function(lambda: live.bus.canary_failures)
    lag_task = asyncio.create_task(lag.run(histogram), name="loop-lag")
    await live.start()
    await app[ENGAGE].start()
    app[READINESS_CHECKS]["live_bus"] = live.bus.check
    try:
        yield
    finally:
        lag_task.cancel()
        await asyncio.gather(lag_task, return_exceptions=True)
        await app[ENGAGE].stop()
        await live.stop()


def consumers(app: web.Application, core: Core) -> list[Consumer]:
    return make_consumers(core)


COMPONENT = Component(name="live", lifespan=lifespan, socket_setup=socket_setup, consumers=consumers,
                      routers=(qa.router, polls.router, networking.router))
