"""Wiring of the live capability: Socket.IO bindings, the room bus, presence, outbox consumers,
live metrics (including the event loop's lag, which a mass disconnect must not blow up)."""

from __future__ import annotations

import asyncio
import gc
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
from handlers import announcements, networking, polls, qa
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

    async def run(self, histogram: Histogram, blocked: Histogram) -> None:
        """`histogram`: wall-clock lateness; `blocked`: the part of it this process spent on its
        own work (its thread's CPU time in the window) — on a shared, overloaded machine the
        difference is time the OS gave to other processes."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            cpu = time.thread_time()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            lag = max(0.0, loop.time() - start - LAG_PROBE_SECONDS)
            histogram.observe(lag)
            blocked.observe(min(lag, max(0.0, time.thread_time() - cpu)))
            if lag > 0.005:
                self.recent.append((time.monotonic(), lag))


class GcTimer:
    """Times the garbage collector's pauses (they stop the event loop) into a histogram."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.started:
            self.histogram.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - self.started)


class GcTuning:
    """Keep garbage-collection pauses short on a node holding many connections.

    CPython's full (gen 2) collection traverses every tracked object and stops the event loop
    while it does: ~100 objects per connection, up to ~1 s at 10,000 connections on a small
    machine, several times during a join storm. Every `interval` seconds the young generation is
    collected (cheap: bounded by the gen-0 threshold) and every surviving object is frozen
    (gc.freeze, O(1): collections skip frozen objects; refcounting still frees them — closing a
    connection leaves no cycles, measured). So automatic collections only ever look at what was
    allocated in the last few seconds. Cyclic garbage that got frozen is reclaimed by an
    unfreeze + full collection once the node has had few connections for a minute, where the
    pause harms nobody.
    """

    RECLAIM_BELOW_CONNECTIONS = 100
    RECLAIM_QUIET_SECONDS = 60.0
    RECLAIM_EVERY_SECONDS = 3600.0  # at most; gc.get_freeze_count() walks the frozen list: not used

    def __init__(self, interval: float, connections: Gauge) -> None:
        self.interval = interval
        self.connections = connections

    async def run(self) -> None:
        gc.collect(1)
        gc.freeze()
        loop = asyncio.get_running_loop()
        reclaimed_at = loop.time()
        quiet_since: float | None = None
        while True:
            await asyncio.sleep(self.interval)
            if self.connections._value.get() < self.RECLAIM_BELOW_CONNECTIONS:
                quiet_since = quiet_since if quiet_since is not None else loop.time()
            else:
                quiet_since = None
            if (quiet_since is not None and loop.time() - quiet_since >= self.RECLAIM_QUIET_SECONDS
                    and loop.time() - reclaimed_at >= self.RECLAIM_EVERY_SECONDS):
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                reclaimed_at = loop.time()
                continue
            gc.collect(0)
            gc.freeze()


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
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5))
    Gauge("foyer_live_rooms", "Live rooms with members on this node", registry=registry).set_function(
        lambda: len(live.rooms))
    Gauge("foyer_live_deliveries", "Room events written to clients by this node (total)",
          registry=registry).set_function(lambda: live.delivered_total())
    Gauge("foyer_live_bus_reconnects", "Times the room bus lost its Redis subscription",
          registry=registry).set_function(lambda: live.bus.reconnects)
    Gauge("foyer_live_bus_canary_failures", "Times the room bus canary did not come back in time",
          registry=registry).set_function(lambda: live.bus.canary_failures)
    blocked = Histogram("foyer_event_loop_blocked_seconds",
                        "Event-loop lag of a 20 ms timer spent on this process's own work (CPU time)",
                        registry=registry, buckets=histogram._upper_bounds[:-1])
    gc_timer = GcTimer(Histogram("foyer_gc_pause_seconds", "Garbage-collector pauses by generation", ["generation"],
                                 registry=registry, buckets=histogram._upper_bounds[:-1]))
    gc.callbacks.append(gc_timer)
    Gauge("foyer_gc_collected_objects", "Unreachable objects the garbage collector freed (total)",
          registry=registry).set_function(lambda: sum(g["collected"] for g in gc.get_stats()))
    lag_task = asyncio.create_task(lag.run(histogram, blocked), name="loop-lag")
    gc_task = None
    if core.settings.live.live_gc_freeze_interval_seconds > 0:
        gc_task = asyncio.create_task(GcTuning(core.settings.live.live_gc_freeze_interval_seconds,
                                               app[METRICS].socket_connections).run(), name="gc-freeze")
    await live.start()
    await app[ENGAGE].start()
    app[READINESS_CHECKS]["live_bus"] = live.bus.check
    try:
        yield
    finally:
        lag_task.cancel()
        if gc_task is not None:
            gc_task.cancel()
        await asyncio.gather(lag_task, *([gc_task] if gc_task else []), return_exceptions=True)
        if gc_timer in gc.callbacks:
            gc.callbacks.remove(gc_timer)
        await app[ENGAGE].stop()
        await live.stop()


def consumers(app: web.Application, core: Core) -> list[Consumer]:
    return make_consumers(core)


COMPONENT = Component(name="live", lifespan=lifespan, socket_setup=socket_setup, consumers=consumers,
                      routers=(qa.router, polls.router, networking.router, announcements.router))
