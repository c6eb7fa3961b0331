"""Two real node processes on one PostgreSQL and Redis: cross-node delivery, ordering, dedupe,
replay after reconnecting to the other node, resync, presence across nodes."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from tests.live.helpers import Client, create_event
from tests.support.api import Api

pytestmark = pytest.mark.multinode

FAST = {"FOYER_LIVE_CHAT_RATE_LIMIT": "10000", "FOYER_LIVE_ACTION_RATE_LIMIT": "10000",
        "FOYER_LIVE_PRESENCE_INTERVAL_SECONDS": "0.2"}


async def two_nodes(nodes, **env: str):
    return await asyncio.gather(nodes.start(env={**FAST, **env}), nodes.start(env={**FAST, **env}))


async def test_cross_node_order_dedupe_and_presence(nodes, http, database_url):
    a, b = await two_nodes(nodes)
    api = Api(a.url, http)
    org, u1, u2 = await asyncio.gather(api.register("Org"), api.register("Ann"), api.register("Ben"))
    event_id = await create_event(database_url, org.id, live_access="public")
    room = f"event:{event_id}"
    c1, c2, c3 = Client(a.url, org.access_token), Client(b.url, u1.access_token), Client(b.url, u2.access_token)
    for c in (c1, c2, c3):
        await c.connect()
        await c.join(room)

    # two senders on two nodes, concurrently: every client sees one gapless sequence, in order
    async def burst(client: Client, tag: str) -> list[dict]:
        return [await client.send(room, f"{tag}{i}", client_id=f"{tag}-{i}") for i in range(25)]

    acks1, acks2 = await asyncio.gather(burst(c1, "a"), burst(c2, "b"))
    assert all(x["ok"] for x in acks1 + acks2)
    assert sorted(x["seq"] for x in acks1 + acks2) == list(range(1, 51))
    for c in (c1, c2, c3):
        msgs = await c.wait_messages(50)
        assert [m["seq"] for m in msgs] == list(range(1, 51)), "exactly once, in seq order"
        assert [m["text"] for m in msgs if m["user"]["id"] == u1.id] == [f"b{i}" for i in range(25)]

    # client_id is per user: another user's "b-3" is a new message (seq 51)
    other = await c3.send(room, "not a retry", client_id="b-3")
    assert other["ok"] and other["seq"] == 51 and not other.get("duplicate")
    # a retry by the same user with the same client_id, on the other node, is the first message
    c2b = Client(a.url, u1.access_token)
    await c2b.connect()
    await c2b.join(room)
    dup = await c2b.send(room, "b3 again", client_id="b-3")
    assert dup["ok"] and dup["duplicate"] and dup["id"] == acks2[3]["id"] and dup["seq"] == acks2[3]["seq"]
    nxt = await c1.send(room, "after", client_id="after")
    assert nxt["seq"] == 52  # 51 was c3's own message above
    for c in (c1, c2, c3):
        msgs = await c.wait_messages(52)
        assert [m["seq"] for m in msgs] == list(range(1, 53))
        assert sum(1 for m in msgs if m["text"].startswith("b3")) == 1

    # presence: 3 distinct users (u1 is connected twice, on both nodes: counted per node → 4)
    def last_count(client: Client) -> int:
        ups = client.events.get("presence:update", [])
        return ups[-1]["count"] if ups else -1

    for c in (c1, c3):
        await c.wait_until(lambda c=c: last_count(c) == 4)
    for c in (c1, c2, c3, c2b):
        await c.disconnect()


async def test_replay_on_the_other_node_then_resync(nodes, http, database_url, redis_prefix, test_services):
    a, b = await two_nodes(nodes, FOYER_LIVE_STREAM_MAXLEN="10")
    api = Api(a.url, http)
    org, u1 = await asyncio.gather(api.register("Org"), api.register("Ann"))
    event_id = await create_event(database_url, org.id, live_access="public")
    room = f"event:{event_id}"
    sender, reader = Client(a.url, org.access_token), Client(b.url, u1.access_token)
    await sender.connect()
    await sender.join(room)
    await reader.connect()
    first = await reader.join(room)
    assert first["epoch"] is None  # no stream yet: the first event starts one
    for i in range(3):
        await sender.send(room, f"m{i}")
    await reader.wait_messages(3)
    await reader.disconnect()

    # missed while away: messages, a reaction, an edit — replayed in order on the *other* node
    acks = [await sender.send(room, f"missed{i}") for i in range(3)]
    r = await sender.call("chat:react", {"room": room, "id": acks[0]["id"], "emoji": "👍"})
    e = await sender.call("chat:edit", {"room": room, "id": acks[1]["id"], "text": "missed1 (edited)"})
    assert r["ok"] and e["ok"], (r, e)
    back = Client(a.url, u1.access_token)
    await back.connect()
    ack = await back.join(room, last_seq=3)
    assert not ack.get("resync")
    epoch = ack["epoch"]
    assert epoch
    assert [(h["event"], h["data"]["seq"]) for h in ack["history"]] == [
        ("chat:message", 4), ("chat:message", 5), ("chat:message", 6), ("chat:reaction", 7), ("chat:edited", 8)]
    assert ack["seq"] == 8 and ack["history"][3]["data"]["count"] == 1
    live = await sender.send(room, "live")
    msgs = await back.wait_messages(1)
    assert [m["seq"] for m in msgs] == [live["seq"]] == [9]

    # too far behind for the stream (10 entries): resync with a fresh snapshot
    for i in range(12):
        await sender.send(room, f"bulk{i}")
    await back.wait_messages(13)
    await back.disconnect()
    again = Client(b.url, u1.access_token)
    await again.connect()
    ack = await again.join(room, last_seq=5, epoch=epoch)
    assert ack["resync"] is True and ack["seq"] == 21
    texts = [h["data"]["text"] for h in ack["history"]]
    assert texts[0] == "m0" and "missed1 (edited)" in texts and texts[-1] == "bulk11"
    assert ack["history"][3]["data"]["reactions"] == {"👍": 1}

    # the stream is lost (Redis flushed it): resync, and the next event starts a new epoch
    r = aioredis.Redis.from_url(test_services.redis_url)
    await r.delete(f"{redis_prefix}live:s:{room}", f"{redis_prefix}live:m:{room}")
    await r.aclose()
    await again.disconnect()
    lost = Client(a.url, u1.access_token)
    await lost.connect()
    ack = await lost.join(room, last_seq=21, epoch=epoch)
    assert ack["resync"] is True and ack["seq"] == 21
    nxt = await sender.send(room, "new epoch")
    assert (await lost.wait_messages(1))[0]["seq"] == nxt["seq"] == 22
    ack = await lost.join(room, last_seq=21, epoch=epoch)  # old epoch: resync again
    assert ack["resync"] is True
    await lost.disconnect()
    fresh = Client(b.url, u1.access_token)
    await fresh.connect()
    ack = await fresh.join(room, last_seq=21)  # no epoch given, position still in the stream
    assert [h["data"]["seq"] for h in ack["history"]] == [22] and ack["epoch"] != epoch
    for c in (sender, fresh):
        await c.disconnect()


async def test_node_killed_mid_stream_clients_miss_nothing(nodes, http, database_url):
    a, b = await two_nodes(nodes)
    api = Api(b.url, http)
    users = await asyncio.gather(*(api.register(f"U{i}") for i in range(4)))
    event_id = await create_event(database_url, users[0].id, live_access="public")
    room = f"event:{event_id}"
    sender = Client(b.url, users[0].access_token)
    await sender.connect()
    await sender.join(room)
    readers = [Client(a.url, u.access_token) for u in users[1:]]
    for c in readers:
        await c.connect()
        await c.join(room)

    sent: list[int] = []

    async def send_forever() -> None:
        for i in range(120):
            ack = await sender.send(room, f"n{i}", client_id=f"n{i}")
            assert ack["ok"], ack
            sent.append(ack["seq"])
            await asyncio.sleep(0.01)

    task = asyncio.create_task(send_forever())
    await readers[0].wait_until(lambda: len(readers[0].events.get("chat:message", [])) >= 30)
    a.kill()
    for c in readers:  # reconnect to the surviving node with the last seq each one saw
        await c.wait_until(lambda c=c: not c.sio.connected, within=10)
        seen = c.seqs("chat:message")
        c2 = Client(b.url, c.token)
        await c2.connect()
        ack = await c2.join(room, last_seq=seen[-1])
        assert not ack.get("resync")
        c.replayed = [h["data"]["seq"] for h in ack["history"]]
        c.after = c2
    await task
    for c in readers:
        await c.after.wait_until(lambda c=c: (c.after.seqs("chat:message") or [0])[-1] >= sent[-1])
        got = c.seqs("chat:message") + c.replayed + c.after.seqs("chat:message")
        assert got == list(range(1, sent[-1] + 1)), "every message exactly once, in order"
        await c.after.disconnect()
    await sender.disconnect()


async def test_broken_subscription_is_detected_and_caught_up(nodes, http, database_url, test_services):
    from urllib.parse import urlsplit

    from tests.live.tcpproxy import Proxy

    parts = urlsplit(test_services.redis_url)
    proxy = await Proxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    try:
        bus_url = f"redis://127.0.0.1:{proxy.port}{parts.path or '/0'}"
        a, b = await asyncio.gather(
            nodes.start(env=FAST),
            nodes.start(env={**FAST, "FOYER_LIVE_BUS_REDIS_URL": bus_url,
                             "FOYER_LIVE_CANARY_INTERVAL_SECONDS": "0.2", "FOYER_LIVE_CANARY_TIMEOUT_SECONDS": "1"}))
        api = Api(a.url, http)
        org, u1 = await asyncio.gather(api.register("Org"), api.register("Ann"))
        event_id = await create_event(database_url, org.id, live_access="public")
        room = f"event:{event_id}"
        sender, reader = Client(a.url, org.access_token), Client(b.url, u1.access_token)
        for c in (sender, reader):
            await c.connect()
            await c.join(room)
        await sender.send(room, "before")
        await reader.wait_messages(1)

        proxy.frozen = True  # the subscription is now silently dead (no RST, no error)
        for i in range(3):
            await sender.send(room, f"during{i}")

        async def ready(url: str) -> tuple[int, dict]:
            async with http.get(url + "/readyz") as resp:
                return resp.status, await resp.json()

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            status, body = await ready(b.url)
            if status == 503:
                break
            assert loop.time() < deadline, "the broken subscription was never reported"
            await asyncio.sleep(0.1)
        assert body["checks"]["live_bus"].startswith("failed")
        assert (await ready(a.url))[0] == 200
        assert len(reader.events.get("chat:message", [])) == 1

        proxy.frozen = False  # the node reconnects, re-subscribes and catches up
        msgs = await reader.wait_messages(4, within=15)
        assert [m["seq"] for m in msgs] == [1, 2, 3, 4]
        while (await ready(b.url))[0] != 200:
            assert loop.time() < deadline + 15
            await asyncio.sleep(0.1)
        await sender.send(room, "after")
        assert [m["seq"] for m in await reader.wait_messages(5)] == [1, 2, 3, 4, 5]
        for c in (sender, reader):
            await c.disconnect()
    finally:
        await proxy.stop()
