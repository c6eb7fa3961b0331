"""Fixtures for the door area: a node with cheap password hashing (tests register many users)."""

from __future__ import annotations

import pytest


@pytest.fixture
def settings(settings_factory):
    return settings_factory(argon2_time_cost=1, argon2_memory_kib=8192)
