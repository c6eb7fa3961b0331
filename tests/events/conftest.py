"""Fixtures for the events area: a node with cheap password hashing (tests register many users)."""

from __future__ import annotations

import pytest


@pytest.fixture
def settings(settings_factory):
    # argon2 at its floor: these tests exercise events, not password hashing.
    return settings_factory(argon2_time_cost=1, argon2_memory_kib=8192)
