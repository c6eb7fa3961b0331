"""Outbox → Kafka against a real Kafka-protocol broker (Tansu), including a relay crash."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import defaultdict

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from config.reach import ReachSettings
from integrations.kafka import DOMAINS, KafkaConfig, KafkaPublisher, topic_for
from server.relay import KAFKA_STREAM, Relay
from storage import outbox
from storage import relay as store
from tests.reach.conftest import PYTHON, ROOT, wait_until, worker_env

pytestmark = pytest.mark.kafka

FAST = ReachSettings(relay_poll_seconds=0.2, relay_lease_seconds=2.0, relay_retry_base_seconds=0.05,
                     relay_retry_max_seconds=0.5)


class TopicReader:
    """An aiokafka consumer over every Foyer topic of one prefix, collecting envelopes."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.consumer = AIOKafkaConsumer(*(prefix + d for d in DOMAINS), bootstrap_servers=bootstrap,
                                         auto_offset_reset="earliest", enable_auto_commit=False)
        self.records: list = []

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()

    async def read_until(self, predicate, timeout: float = 20.0) -> list:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.records):
            if loop.time() > deadline:
                raise AssertionError(f"timed out; read {len(self.records)} records")
            batches = await self.consumer.getmany(timeout_ms=200)
            for _tp, msgs in sorted(batches.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
                self.records.extend(msgs)
        return self.records

    def ids(self) -> list[str]:
        return [orjson.loads(r.value)["id"] for r in self.records]


async def append_mixed(db, events: list[uuid.UUID], rounds: int) -> list[outbox.OutboxEvent]:
    """Facts of several Foyer events, interleaved, across many transactions."""
    written = []
    kinds = ["order.placed", "order.paid", "ticket.checked_in", "session.changed", "message.posted",
             "question.asked", "vote.cast", "room.joined", "feedback.submitted", "custom.thing"]
    for r in range(rounds):
        async with db.transaction("mixed") as conn:
            for i, event_id in enumerate(events):
                kind = kinds[(r + i) % len(kinds)]
                written.append(await outbox.append(conn, type=kind, event_id=event_id, data={"round": r, "i": i}))
    return written


async def test_outbox_to_kafka_envelopes_topics_and_order_per_key(rdb, database_url, kafka_bootstrap, topic_prefix):
    publisher = KafkaPublisher(KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=3))
    relay = Relay(db=rdb, dsn=database_url, node_id="node-k", settings=FAST, consumers=[], publisher=publisher)
    foyer_events = [uuid.uuid4() for _ in range(4)]
    written = await append_mixed(rdb, foyer_events, rounds=10)
    await relay.start()
    try:
        async with TopicReader(kafka_bootstrap, topic_prefix) as reader:
            await reader.read_until(lambda recs: len(recs) >= len(written))
            more = await append_mixed(rdb, foyer_events, rounds=3)  # woken by NOTIFY while running
            written += more
            await reader.read_until(lambda recs: len(recs) >= len(written))
        last = max(e.seq for e in written)
        await wait_until(lambda: rdb.fetchval("SELECT last_seq = $2 FROM relay_streams WHERE name = $1",
                                              KAFKA_STREAM, last), what="cursor at the end")
    finally:
        await relay.stop()
    assert publisher._producer is None  # stopped with the relay
    by_id = {str(e.id): e for e in written}
    assert sorted(reader.ids()) == sorted(by_id)  # everything, once (no crash here)
    per_key: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    for record in reader.records:
        envelope = orjson.loads(record.value)
        source = by_id[envelope["id"]]
        assert envelope == orjson.loads(orjson.dumps(source.envelope()))
        assert set(envelope) == {"id", "type", "version", "occurred_at", "event_id", "data"}
        assert record.topic == topic_for(topic_prefix, source.type)
        assert record.key == str(source.event_id).encode()
        assert dict(record.headers)["type"] == source.type.encode()
        per_key[record.topic, record.key].append(source.seq)
    # in a topic, one Foyer event's facts share a key, hence a partition, hence their order
    assert {key for _topic, key in per_key} == {str(e).encode() for e in foyer_events}
    for (topic, key), seqs in per_key.items():
        assert len({r.partition for r in reader.records if (r.topic, r.key) == (topic, key)}) == 1
        assert seqs == sorted(seqs)
    assert {r.topic for r in reader.records} >= {topic_prefix + "orders", topic_prefix + "checkins",
                                                  topic_prefix + "schedule", topic_prefix + "live",
                                                  topic_prefix + "engagement", topic_prefix + "other"}
    state = await rdb.fetchrow("SELECT last_seq, delivered FROM relay_streams WHERE name = $1", KAFKA_STREAM)
    assert state["last_seq"] == max(e.seq for e in written) and state["delivered"] == len(written)


async def test_oversized_record_is_dead_lettered_and_the_stream_continues(rdb, database_url, kafka_bootstrap,
                                                                            topic_prefix):
    publisher = KafkaPublisher(KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=1))
    relay = Relay(db=rdb, dsn=database_url, node_id="node-k", settings=FAST, consumers=[], publisher=publisher)
    async with rdb.transaction("big") as conn:
        ok1 = await outbox.append(conn, type="order.placed", data={"n": 1})
        big = await outbox.append(conn, type="order.placed", data={"blob": "x" * 2_000_000})
        ok2 = await outbox.append(conn, type="order.paid", data={"n": 2})
    await relay.start()
    try:
        async with TopicReader(kafka_bootstrap, topic_prefix) as reader:
            await reader.read_until(lambda recs: len(recs) >= 2)
            await wait_until(lambda: store.list_dead_letters(rdb.pool), what="dead letter")
    finally:
        await relay.stop()
    assert sorted(reader.ids()) == sorted([str(ok1.id), str(ok2.id)])
    letters = await store.list_dead_letters(rdb.pool)
    assert [(d.consumer, d.event_id) for d in letters] == [(KAFKA_STREAM, big.id)]
    assert "MessageSizeTooLarge" in letters[0].error


@pytest.mark.multinode
async def test_killed_worker_loses_nothing(rdb, database_url, kafka_bootstrap, topic_prefix, test_services,
                                           redis_prefix, tmp_path):
    """SIGKILL `run.py worker` while it publishes; a restarted worker publishes the rest.

    Kafka then holds every event at least once (duplicates only from the batch in flight at the
    kill), and deduplicating by envelope id gives exactly the outbox.
    """
    foyer_events = [uuid.uuid4() for _ in range(20)]
    written = await append_mixed(rdb, foyer_events, rounds=150)  # 3,000 facts
    first_seq = min(e.seq for e in written)
    env = worker_env(database_url, test_services.redis_url, redis_prefix, tmp_path,
                     FOYER_KAFKA_BOOTSTRAP=kafka_bootstrap, FOYER_KAFKA_TOPIC_PREFIX=topic_prefix,
                     FOYER_RELAY_BATCH_SIZE="10", FOYER_RELAY_LEASE_SECONDS="1.5",
                     FOYER_KAFKA_TOPIC_PARTITIONS="3")

    async def start_worker(n: int) -> asyncio.subprocess.Process:
        log = (tmp_path / f"worker-{n}.log").open("wb")
        return await asyncio.create_subprocess_exec(PYTHON, str(ROOT / "run.py"), "worker", cwd=str(ROOT), env=env,
                                                    stdout=log, stderr=asyncio.subprocess.STDOUT)

    async with TopicReader(kafka_bootstrap, topic_prefix) as reader:
        worker = await start_worker(1)
        try:
            await wait_until(lambda: rdb.fetchval("SELECT last_seq > $2 FROM relay_streams WHERE name = $1",
                                                  KAFKA_STREAM, first_seq + 300), timeout=30, what="publishing")
            worker.send_signal(signal.SIGKILL)  # mid-publish: no clean shutdown, lease not released
            await worker.wait()
            cursor = await rdb.fetchval("SELECT last_seq FROM relay_streams WHERE name = $1", KAFKA_STREAM)
            assert cursor < max(e.seq for e in written), "the kill should land before the end"
            worker = await start_worker(2)
            wanted = {str(e.id) for e in written}
            await reader.read_until(lambda recs: wanted <= {orjson.loads(r.value)["id"] for r in recs}, timeout=40)
        finally:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
                await asyncio.wait_for(worker.wait(), 15)
    ids = reader.ids()
    assert set(ids) == wanted  # nothing lost, nothing invented
    assert len(ids) - len(wanted) <= 10  # duplicates: at most the batch in flight at the kill
    seqs_by_key: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    by_id = {str(e.id): e for e in written}
    seen: set[str] = set()
    for record in reader.records:  # a consumer that dedupes by id sees each key's facts in order
        envelope_id = orjson.loads(record.value)["id"]
        if envelope_id not in seen:
            seen.add(envelope_id)
            seqs_by_key[record.topic, record.key].append(by_id[envelope_id].seq)
    for seqs in seqs_by_key.values():
        assert seqs == sorted(seqs)
    log = (tmp_path / "worker-2.log").read_text()
    assert "Foyer worker" in log and "kafka" in log
