"""Wiring of the live capability: Socket.IO bindings, the room bus, presence, outbox consumers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import socketio
from aiohttp import web

import rooms
from domain.consumers import Consumer
from domain.services import Core
from handlers.system import READINESS_CHECKS
from rooms.consumers import make_consumers
from rooms.service import Live
from server.components import Component

LIVE: web.AppKey[Live] = web.AppKey("foyer.live", Live)


def socket_setup(sio: socketio.AsyncServer, core: Core, app: web.Application) -> None:
    app[LIVE] = rooms.setup(sio, core)  # type: ignore[arg-type]


async def lifespan(app: web.Application, core: Core) -> AsyncIterator[None]:
    live = app[LIVE]
    await live.start()
    app[READINESS_CHECKS]["live_bus"] = live.bus.check
    try:
        yield
    finally:
        await live.stop()


def consumers(app: web.Application, core: Core) -> list[Consumer]:
    return make_consumers(core)


COMPONENT = Component(name="live", lifespan=lifespan, socket_setup=socket_setup, consumers=consumers)
