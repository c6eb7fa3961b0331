"""Wiring of the events capability: events, team, sessions/speakers/schedule, personal agenda."""

from __future__ import annotations

from handlers import agenda, events, sessions, team
from server.components import Component

COMPONENT = Component(name="events", routers=(events.router, team.router, sessions.router, agenda.router))
