"""A room written in chunks (rooms/local.FLUSH_CHUNK) still delivers every message once and in
order, to real Socket.IO clients over real sockets, while members join and leave mid-stream."""

from __future__ import annotations

import asyncio

import pytest

import rooms.local
from tests.live.helpers import Client, create_event


@pytest.fixture
def tiny_chunks(monkeypatch):
    monkeypatch.setattr(rooms.local, "FLUSH_CHUNK", 2)  # 8 members: four loop passes per batch


async def test_chunked_fan_out_keeps_order_and_loses_nothing(tiny_chunks, app_factory, settings_factory, api,
                                                              database_url):
    node = await app_factory(settings_factory(live_chat_rate_limit=1000))
    api.base_url = str(node.make_url("/")).rstrip("/")
    org = await api.register("Org")
    event_id = await create_event(database_url, org.id, live_access="public")
    room = f"event:{event_id}"
    users = await asyncio.gather(*(api.register(f"U{i}") for i in range(8)))
    clients = [Client(str(node.make_url("/")), u.access_token, u) for u in users]
    for c in clients:
        await c.connect()
        await c.join(room)
    sender, leaver = clients[0], clients[-1]
    acks = []
    for i in range(30):  # bursts: several messages land while a chunked write is in progress
        acks.append(asyncio.ensure_future(sender.send(room, f"m{i}")))
        if i == 10:
            await asyncio.gather(*acks)
            await leaver.disconnect()
        if i % 5 == 4:
            await asyncio.sleep(0)
    acked = await asyncio.gather(*acks)
    assert all(a["ok"] for a in acked), acked
    expected = sorted(a["seq"] for a in acked)
    for c in clients[:-1]:
        await c.wait_messages(30)
        seqs = [m["seq"] for m in c.events["chat:message"]]
        assert seqs == expected, (c.user.name, seqs)  # each once, in seq order, none missing
    for c in clients[:-1]:
        await c.disconnect()
