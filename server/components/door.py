"""Wiring of the door capability: check-in, waiting room, reserved seating, registration forms,
organizer views. Runs after the tickets component (its lifespan needs the order service to
register the pre-hold and batch hooks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from domain.checkin.scanning import CheckinService
from domain.checkin.services import DoorServices
from domain.services import Core
from handlers import checkin
from handlers.checkin import DOOR
from handlers.orders import TICKETS
from server.components import Component


def setup(app: web.Application, core: Core) -> None:
    app[DOOR] = DoorServices()


async def lifespan(app: web.Application, core: Core) -> AsyncIterator[None]:
    tickets = app[TICKETS].ready()
    svc = app[DOOR]
    svc.keys = tickets.keys
    svc.checkin = CheckinService(db=core.db, keys=tickets.keys)
    yield


COMPONENT = Component(name="door", routers=(checkin.router,), setup=setup, lifespan=lifespan)
