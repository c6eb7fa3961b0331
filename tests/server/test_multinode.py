"""Two separate node processes on one database and Redis: concurrent start-up and shared auth."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.api import Api

pytestmark = pytest.mark.multinode


async def test_two_nodes_start_together_and_share_tokens(nodes, http):
    a, b = await asyncio.gather(nodes.start(), nodes.start())
    api_a, api_b = Api(a.url, http), Api(b.url, http)
    user = await api_a.register()
    status, me = await api_b.get("/api/me", user=user)
    assert status == 200 and me["id"] == user.id
