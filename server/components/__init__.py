"""Capabilities plugged into a node. Each module exposes `COMPONENT`; `server.app` mounts them in order.

A component brings its HTTP routers, an optional `setup` (runs in `create_app`, before the app is
frozen: build service objects and store them under the component's AppKeys; no I/O yet), an
optional lifespan (background loops, started after PostgreSQL/Redis are connected, stopped
before they close, in reverse order), optional Socket.IO bindings and optional outbox consumers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import socketio
from aiohttp import web

from domain.consumers import Consumer
from domain.services import Core
from handlers.api import Router

Setup = Callable[[web.Application, Core], None]
Lifespan = Callable[[web.Application, Core], AsyncIterator[None]]
ConsumerFactory = Callable[[web.Application, Core], list[Consumer]]
SocketSetup = Callable[[socketio.AsyncServer, Core, web.Application], None]


@dataclass(frozen=True)
class Component:
    name: str
    routers: tuple[Router, ...] = ()
    setup: Setup | None = None
    lifespan: Lifespan | None = None
    socket_setup: SocketSetup | None = None
    consumers: ConsumerFactory | None = None  # outbox consumers, run by the relay (domain/consumers.py)
    extra: dict = field(default_factory=dict)


def all_components() -> list[Component]:
    from server.components import accounts, door, events, live, notify, reach, tickets

    # reach last: its lifespan starts the outbox relay, which asks every component for its consumers
    # once their lifespans have built what those consumers use (and stops the relay first).
    return [accounts.COMPONENT, events.COMPONENT, tickets.COMPONENT, live.COMPONENT, notify.COMPONENT,
            door.COMPONENT, reach.COMPONENT]
