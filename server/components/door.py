"""Wiring of the door capability: check-in, waiting room, reserved seating, registration forms,
organizer views. Runs after the tickets component (its lifespan needs the order service to
register the pre-hold and batch hooks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from domain.checkin.scanning import CheckinService
from domain.checkin.services import DoorServices
from domain.forms import Forms
from domain.seating import Seating
from domain.services import Core
from handlers import checkin, forms, seating
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
    svc.seating = Seating(db=core.db, tickets=tickets, cache_seconds=core.settings.tickets.sale_cache_seconds)
    svc.checkin.seat_of = svc.seating.seat_of_ticket
    svc.forms = Forms(db=core.db, cache_seconds=core.settings.tickets.sale_cache_seconds)
    orders = tickets.orders
    orders.pre_hold_hooks.extend((svc.seating.pre_hold, svc.forms.pre_hold))
    orders.batch_hooks.extend((svc.seating, svc.forms))
    orders.reacquire_hooks.append(svc.seating.reacquire)
    yield


COMPONENT = Component(name="door", routers=(checkin.router, seating.router, forms.router), setup=setup, lifespan=lifespan)
