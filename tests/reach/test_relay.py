"""The outbox relay with in-process consumers, on the real test database (no Kafka)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter, defaultdict

from prometheus_client import CollectorRegistry

from config.reach import ReachSettings
from domain.consumers import Consumer
from server.relay import Relay, RelayMetrics
from storage import outbox
from storage import relay as store
from storage.outbox import OutboxEvent
from tests.reach.conftest import wait_until

FAST = ReachSettings(relay_poll_seconds=0.2, relay_lease_seconds=2.0, relay_max_attempts=3,
                     relay_retry_base_seconds=0.01, relay_retry_max_seconds=0.05)


async def append(db, type: str, n: int = 1, *, event_id: uuid.UUID | None = None, **data) -> list[OutboxEvent]:
    async with db.transaction("test_append") as conn:
        return [await outbox.append(conn, type=type, event_id=event_id, data={"i": i, **data}) for i in range(n)]


def recorder(name: str, types: frozenset[str] | None = None, sink: dict | None = None):
    seen: list[OutboxEvent] = [] if sink is None else sink.setdefault(name, [])

    async def handle(event: OutboxEvent) -> None:
        seen.append(event)

    return Consumer(name=name, handle=handle, types=types), seen


def make_relay(db, database_url, consumers, *, node="node-a", settings=FAST, metrics=None) -> Relay:
    return Relay(db=db, dsn=database_url, node_id=node, settings=settings, consumers=consumers, metrics=metrics)


async def test_consumers_get_every_event_in_commit_order_and_filtered(rdb, database_url):
    everything, seen_all = recorder("test.all")
    orders_only, seen_orders = recorder("test.orders", frozenset({"order.paid"}))
    relay = make_relay(rdb, database_url, [everything, orders_only])
    await relay.start()
    try:
        await relay.wait_listening()
        event_id = uuid.uuid4()
        # T1 takes the lower seqs but commits after T2: sequence order alone would skip T1's rows.
        async with rdb.transaction("t1") as t1:
            early = [await outbox.append(t1, type="order.placed", event_id=event_id, data={"n": i}) for i in range(3)]
            late = await append(rdb, "order.paid", 2, event_id=event_id)
            await asyncio.sleep(0.3)
            assert seen_all == [], "rows of a later transaction must wait for an earlier unfinished one"
        more = await append(rdb, "session.changed", 5)
        expected = [e.id for e in early + late + more]
        await wait_until(lambda: len(seen_all) >= len(expected), what="all events delivered")
        assert [e.id for e in seen_all] == expected  # T1 wrote first (lower txid): its facts come first
        await wait_until(lambda: len(seen_orders) >= 2)
        assert [e.id for e in seen_orders] == [e.id for e in late]
        assert all(e.type == "order.paid" for e in seen_orders)
        # every delivery is recorded; a filtered stream's cursor moves past rows it does not want
        async def recorded():
            rows = await rdb.fetch("SELECT consumer, count(*) AS n FROM relay_deliveries GROUP BY consumer")
            return {r["consumer"]: r["n"] for r in rows} == {"test.all": 10, "test.orders": 2}

        await wait_until(recorded, what="deliveries recorded")  # recorded just after handle returns
        tail = await rdb.fetchval("SELECT max(seq) FROM outbox")
        await wait_until(lambda: rdb.fetchval("SELECT last_seq = $1 FROM relay_streams WHERE name = 'test.orders'",
                                              tail), what="the filtered stream's cursor at the tail")
        # and rows every stream has passed are marked published by the sweeper
        await wait_until(lambda: rdb.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"),
                         what="published marks")
    finally:
        await relay.stop()
    assert len({e.id for e in seen_all}) == len(seen_all)


async def test_restart_resumes_from_cursor_and_skips_recorded_pairs(rdb, database_url):
    sink: dict = {}
    consumer, seen = recorder("test.resume", sink=sink)
    relay = make_relay(rdb, database_url, [consumer])
    await relay.start()
    first = await append(rdb, "question.asked", 20)
    await wait_until(lambda: len(seen) == 20)
    await relay.stop()
    # Simulate a crash after delivery but before the cursor moved: rewind the cursor only.
    await rdb.execute("UPDATE relay_streams SET last_txid = 0, last_seq = 0 WHERE name = 'test.resume'")
    second = await append(rdb, "question.asked", 5)
    relay = make_relay(rdb, database_url, [consumer], node="node-b")
    await relay.start()
    try:
        await wait_until(lambda: len(seen) >= 25)
        await asyncio.sleep(0.3)
    finally:
        await relay.stop()
    assert [e.id for e in seen] == [e.id for e in first + second]  # recorded pairs were skipped


async def test_poison_event_is_dead_lettered_and_the_stream_goes_on(rdb, database_url):
    registry = CollectorRegistry()
    metrics = RelayMetrics(registry)
    poison_ids: set[uuid.UUID] = set()
    handled: list[OutboxEvent] = []
    calls: Counter = Counter()

    async def fragile(event: OutboxEvent) -> None:
        calls[event.id] += 1
        if event.id in poison_ids:
            raise ValueError("cannot handle this one")
        handled.append(event)

    healthy, seen_healthy = recorder("test.healthy")
    relay = make_relay(rdb, database_url, [Consumer("test.fragile", fragile), healthy], metrics=metrics)
    before = await append(rdb, "vote.cast", 3)
    async with rdb.transaction("poison") as conn:
        bad = await outbox.append(conn, type="vote.cast", data={"bad": True})
        poison_ids.add(bad.id)
    after = await append(rdb, "vote.cast", 3)
    await relay.start()
    try:
        await wait_until(lambda: len(handled) == 6, what="events after the poison one")
        await wait_until(lambda: len(seen_healthy) == 7)
    finally:
        await relay.stop()
    assert [e.id for e in handled] == [e.id for e in before + after]
    assert calls[bad.id] == FAST.relay_max_attempts
    letters = await store.list_dead_letters(rdb.pool)
    assert [(d.consumer, d.event_id, d.attempts) for d in letters] == [("test.fragile", bad.id, 3)]
    assert "ValueError: cannot handle this one" in letters[0].error
    assert registry.get_sample_value("foyer_relay_dead_letters_total", {"stream": "test.fragile"}) == 1
    assert registry.get_sample_value("foyer_relay_failures_total", {"stream": "test.fragile"}) == 3
    assert registry.get_sample_value("foyer_relay_failures_total", {"stream": "test.healthy"}) is None
    assert await rdb.fetchval("SELECT attempts FROM relay_streams WHERE name = 'test.fragile'") == 0


async def test_two_relays_never_deliver_the_same_event_twice(rdb, database_url):
    from storage.db import Database

    counts: dict[str, Counter] = defaultdict(Counter)

    def counting(name: str) -> Consumer:
        async def handle(event: OutboxEvent) -> None:
            counts[name][event.id] += 1
            await asyncio.sleep(0)

        return Consumer(name, handle)

    db_b = await Database.connect(database_url, min_size=1, max_size=8)
    names = [f"test.c{i}" for i in range(4)]
    a = make_relay(rdb, database_url, [counting(n) for n in names], node="node-a")
    b = make_relay(db_b, database_url, [counting(n) for n in names], node="node-b")
    await asyncio.gather(a.start(), b.start())
    try:
        ids = []
        for _ in range(10):
            ids += [e.id for e in await append(rdb, "message.posted", 30)]
        await wait_until(lambda: all(len(counts[n]) == len(ids) for n in names), timeout=20, what="delivery")
        # stop one node mid-stream: its streams move to the other, still exactly once
        await a.stop()
        for _ in range(5):
            ids += [e.id for e in await append(rdb, "message.posted", 20)]
        await wait_until(lambda: all(len(counts[n]) == len(ids) for n in names), timeout=20, what="failover")
    finally:
        await a.stop()
        await b.stop()
        await db_b.close()
    for name in names:
        assert set(counts[name]) == set(ids)
        assert max(counts[name].values()) == 1, f"{name} got an event twice"


async def test_retention_prunes_old_published_rows(rdb, database_url):
    consumer, seen = recorder("test.retention")
    events = await append(rdb, "room.joined", 4)
    relay = make_relay(rdb, database_url, [consumer], settings=dataclasses.replace(FAST, outbox_retention_hours=1.0))
    await relay.start()
    try:
        await wait_until(lambda: len(seen) == 4)
        await wait_until(lambda: rdb.fetchval("SELECT count(*) = 4 FROM outbox WHERE published_at IS NOT NULL"))
    finally:
        await relay.stop()
    await rdb.execute("UPDATE outbox SET published_at = now() - interval '2 hours' WHERE id = $1", events[0].id)
    await rdb.execute("UPDATE relay_deliveries SET delivered_at = now() - interval '2 hours' WHERE event_id = $1",
                      events[0].id)
    assert await store.prune(rdb.pool, older_than_seconds=3600) == 1
    assert await rdb.fetchval("SELECT count(*) FROM outbox") == 3
    assert await rdb.fetchval("SELECT count(*) FROM relay_deliveries") == 3
    lag = await store.outbox_lag(rdb.pool)
    assert (lag.pending, lag.oldest_pending_seconds) == (0, 0.0)
