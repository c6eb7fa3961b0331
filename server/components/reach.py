"""Wiring of the reach capability."""

from __future__ import annotations

from server.components import Component

COMPONENT = Component(name="reach")
