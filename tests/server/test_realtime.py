"""Socket.IO /live: connection auth."""

from __future__ import annotations

import pytest
import socketio

from tests.support.live import LiveClient


async def test_connect_requires_a_valid_token(api, server):
    url = str(server.make_url("/"))
    client = LiveClient(url, token=None)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(auth=None)
    assert client.connect_error["data"]["code"] == "unauthorized"
    client = LiveClient(url, token="garbage")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect()
    assert client.connect_error["data"]["code"] == "invalid_token"


async def test_connect_with_token(api, server):
    user = await api.register()
    client = LiveClient(str(server.make_url("/")), token=user.access_token)
    await client.connect()
    assert client.sio.connected
    await client.disconnect()
