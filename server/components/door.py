"""Wiring of the door capability: check-in, waiting room, reserved seating, registration forms,
organizer views. Runs after the tickets component (its lifespan needs the order service to
register the pre-hold and batch hooks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from config.fields import SettingsError
from domain.checkin.scanning import CheckinService
from domain.checkin.services import DoorServices
from domain.forms import Forms
from domain.queue import Signer, WaitingRoom
from domain.reports import Reports
from domain.seating import Seating
from domain.services import Core
from handlers import checkin, forms, queue, reports, seating
from handlers.checkin import DOOR
from handlers.orders import TICKETS
from server.components import Component
from storage.queue import QueueStore
from storage.ratelimit import RateLimiter


def setup(app: web.Application, core: Core) -> None:
    s = core.settings.tickets
    if not 10 <= s.queue_tick_ms <= 10_000:
        raise SettingsError("FOYER_QUEUE_TICK_MS: must be between 10 and 10000")
    if not 30 <= s.queue_grant_seconds <= 86_400:
        raise SettingsError("FOYER_QUEUE_GRANT_SECONDS: must be between 30 and 86400")
    if s.queue_max_per_ip < 0 or s.queue_polls_per_minute < 0:
        raise SettingsError("FOYER_QUEUE_MAX_PER_IP / FOYER_QUEUE_POLLS_PER_MINUTE: must be 0 or more")
    app[DOOR] = DoorServices()


async def lifespan(app: web.Application, core: Core) -> AsyncIterator[None]:
    tickets = app[TICKETS].ready()
    svc = app[DOOR]
    svc.keys = tickets.keys
    svc.checkin = CheckinService(db=core.db, keys=tickets.keys)
    svc.seating = Seating(db=core.db, tickets=tickets, cache_seconds=core.settings.tickets.sale_cache_seconds)
    svc.checkin.seat_of = svc.seating.seat_of_ticket
    svc.forms = Forms(db=core.db, cache_seconds=core.settings.tickets.sale_cache_seconds)
    svc.reports = Reports(db=core.db)
    s = core.settings.tickets
    svc.queue = WaitingRoom(
        db=core.db, store_=QueueStore(core.redis, core.keys), limiter=RateLimiter(core.redis),
        signer=Signer(str(core.settings.auth.jwt_secret)), tickets=tickets, keys=core.keys,
        cache_seconds=s.sale_cache_seconds, default_grant_seconds=s.queue_grant_seconds,
        default_max_per_ip=s.queue_max_per_ip, polls_per_minute=s.queue_polls_per_minute)
    orders = tickets.orders
    # Order of checks before the gate: waiting-room grant, seat choice, registration answers.
    orders.pre_hold_hooks.extend((svc.queue.pre_hold, svc.seating.pre_hold, svc.forms.pre_hold))
    orders.batch_hooks.extend((svc.seating, svc.forms))
    orders.reacquire_hooks.append(svc.seating.reacquire)
    svc.queue.on_admitted, svc.queue.on_positions = _live_queue(core)
    stop = asyncio.Event()
    admitter = asyncio.create_task(svc.queue.admitter(s.queue_tick_ms / 1000, stop=stop), name="foyer.queue_admitter")
    try:
        yield
    finally:
        stop.set()
        admitter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await admitter


def _live_queue(core: Core):  # type: ignore[no-untyped-def]
    """Waiting-room updates to each buyer's private `user:<id>` room (rooms/broadcast.py):
    `queue:admitted` {event_id, ticket_type_id, grant, grant_expires_at} (durable: a client that
    reconnects gets it) and `queue:position` {event_id, ticket_type_id, position} (ephemeral)."""
    from rooms.broadcast import publish, publish_ephemeral

    async def on_admitted(event_id, type_id, admitted):  # type: ignore[no-untyped-def]
        for account, grant, expires in admitted:
            await publish(core, room=f"user:{account}", event="queue:admitted",
                          data={"event_id": event_id, "ticket_type_id": type_id, "grant": grant,
                                "grant_expires_at": expires},
                          dedupe_key=f"queue:{type_id}:{account}:{int(expires.timestamp() * 1000)}")

    async def on_positions(event_id, type_id, positions):  # type: ignore[no-untyped-def]
        for account, position in positions:
            await publish_ephemeral(core, room=f"user:{account}", event="queue:position",
                                    data={"event_id": event_id, "ticket_type_id": type_id, "position": position})

    return on_admitted, on_positions


COMPONENT = Component(name="door", routers=(checkin.router, seating.router, forms.router, queue.router, reports.router),
                      setup=setup, lifespan=lifespan)
