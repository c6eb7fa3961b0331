"""Wiring of the tickets capability."""

from __future__ import annotations

from server.components import Component

COMPONENT = Component(name="tickets")
