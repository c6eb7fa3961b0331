"""Wiring of the notify capability (push, email, calendar, share pages, feedback)."""

from __future__ import annotations

from server.components import Component

COMPONENT = Component(name="notify")
