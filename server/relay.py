"""The outbox relay: delivers committed outbox rows to in-process consumers and to Kafka.

It runs in every node (the reach component's lifespan) and in `run.py worker` processes.

Streams. Each registered `Consumer` (domain/consumers.py) is one stream, and so is `kafka`
when `kafka_bootstrap` is set. A stream has a cursor in PostgreSQL (`relay_streams`) and is
worked on by one node at a time (a lease, renewed while working, fenced on every write), so
streams spread over nodes and a crashed node's streams move on after `relay_lease_seconds`.

Guarantees, per stream:
- Order: rows in (transaction id, seq) order — every row of one transaction in seq order, and a
  transaction's rows after those of every transaction that finished before it wrote. Only rows
  of finished transactions are read, so a row that commits "late" is never skipped.
- At-least-once: the cursor moves only after delivery. A crash redelivers at most the rows
  delivered since the last progress write (every ~20 ms or `relay_batch_size` rows).
- Exactly-once effect: `(consumer, event id)` is recorded with each progress write and skipped
  on redelivery; consumers writing to PostgreSQL can claim the pair in their own transaction
  (`storage.relay.claim_once`) to close the remaining window.
- Isolation: a failing consumer only delays its own stream. Failures retry with capped,
  jittered exponential backoff; after `relay_max_attempts` the event is written to
  `relay_dead_letters` (metric + error log) and the stream moves on. Kafka outages retry
  without limit (the stream lags; nothing is dropped); records Kafka can never take (too large)
  are dead-lettered.
Wake-up: LISTEN foyer_outbox (NOTIFY at every outbox commit) with a polling fallback.
Retention: rows every active stream has passed get `published_at`; they and the delivery
records are deleted after `outbox_retention_hours`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from config.reach import ReachSettings
from domain.consumers import Consumer
from integrations.kafka import KafkaPublisher, PermanentPublishError
from storage import relay as store
from storage.db import Database
from storage.outbox import NOTIFY_CHANNEL, OutboxEvent
from storage.relay import Position

log = logging.getLogger("foyer.relay")

KAFKA_STREAM = "kafka"
HANDLER_TIMEOUT_SECONDS = 60.0  # a hung consumer counts as a failed attempt
FLUSH_INTERVAL_SECONDS = 0.02  # progress writes at most this far apart while a batch is delivered
SWEEP_INTERVAL_SECONDS = 1.0
PRUNE_INTERVAL_SECONDS = 60.0
SAMPLE_INTERVAL_SECONDS = 5.0
ACTIVE_STREAM_WINDOW_SECONDS = 86_400.0


class RelayMetrics:
    """Prometheus series of the relay (registered on the node's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter("foyer_relay_delivered_total", "Outbox events delivered, by stream",
                                 ["stream"], registry=registry)
        self.failures = Counter("foyer_relay_failures_total", "Failed delivery attempts, by stream",
                                ["stream"], registry=registry)
        self.dead_letters = Counter("foyer_relay_dead_letters_total", "Events given up on, by stream",
                                    ["stream"], registry=registry)
        self.published = Counter("foyer_kafka_published_total", "Outbox events acknowledged by Kafka",
                                 registry=registry)
        self.pending = Gauge("foyer_outbox_pending", "Outbox rows not yet delivered to every stream",
                             registry=registry)
        self.oldest = Gauge("foyer_outbox_oldest_pending_seconds", "Age of the oldest undelivered outbox row",
                            registry=registry)
        self.behind = Gauge("foyer_relay_stream_behind", "Outbox rows after a stream's cursor", ["stream"],
                            registry=registry)


class _BoundedPool:
    """The relay's view of the pool: at most `limit` of its statements at once, whatever the number of
    streams, so a node's relay never holds more than `limit` connections (consumers use their own)."""

    def __init__(self, pool: asyncpg.Pool, limit: int) -> None:
        self.pool = pool
        self.slots = asyncio.Semaphore(limit)

    async def fetch(self, *args):
        async with self.slots:
            return await self.pool.fetch(*args)

    async def fetchrow(self, *args):
        async with self.slots:
            return await self.pool.fetchrow(*args)

    async def fetchval(self, *args):
        async with self.slots:
            return await self.pool.fetchval(*args)

    async def execute(self, *args):
        async with self.slots:
            return await self.pool.execute(*args)


class LeaseLost(Exception):
    """Another node owns the stream now; stop working on it."""


_BUSY_ROUND = 32  # events in a round that count as a busy outbox (see relay_linger_ms)


@dataclass
class _Stream:
    name: str
    types: list[str] | None
    consumer: Consumer | None  # None for the kafka stream
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lost: bool = False
    working: bool = False  # inside _work (delivering): a graceful stop lets it record its progress
    task: asyncio.Task | None = None
    position: Position | None = None  # the cursor after the last round, while the lease is fresh
    leased_at: float = 0.0  # monotonic time of the last claim/renewal that succeeded
    delivered: int = 0  # events handled in the last round


class Relay:
    def __init__(
        self, *, db: Database, dsn: str, node_id: str, settings: ReachSettings, consumers: list[Consumer],
        publisher: KafkaPublisher | None = None, metrics: RelayMetrics | None = None,
    ) -> None:
        names = [c.name for c in consumers]
        if len(set(names)) != len(names) or KAFKA_STREAM in names:
            raise ValueError(f"consumer names must be unique and not {KAFKA_STREAM!r}: {names}")
        self.db = db
        self.dsn = dsn
        self.node_id = node_id
        self.settings = settings
        self.publisher = publisher
        self.metrics = metrics
        self.streams = [
            _Stream(c.name, sorted(c.types) if c.types is not None else None, c) for c in consumers
        ]
        if publisher is not None:
            self.streams.append(_Stream(KAFKA_STREAM, None, None))
        self._tasks: list[asyncio.Task] = []
        self._listening = asyncio.Event()
        self._pool = _BoundedPool(db.pool, settings.relay_db_connections)
        self._stopping = False

    @property
    def stream_names(self) -> list[str]:
        return [s.name for s in self.streams]

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await store.register_streams(self.db.pool, self.stream_names)
        spawn = asyncio.get_running_loop().create_task
        self._tasks.append(spawn(self._listen_loop(), name="relay-listen"))
        for stream in self.streams:
            stream.task = spawn(self._stream_loop(stream), name=f"relay-{stream.name}")
            self._tasks.append(stream.task)
        self._tasks.append(spawn(self._sweep_loop(), name="relay-sweep"))
        if self.metrics is not None:
            self._tasks.append(spawn(self._sample_loop(), name="relay-sample"))
        log.info("relay started on %s: streams %s", self.node_id, ", ".join(self.stream_names) or "(none)")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop cleanly: streams in the middle of a batch finish the event in hand and record their
        progress (so a graceful stop redelivers nothing); idle loops are cancelled at once."""
        self._stopping = True
        working = {s.task for s in self.streams if s.working and s.task is not None}
        for task in self._tasks:
            if task not in working:
                task.cancel()
        if working:
            await asyncio.wait(working, timeout=grace)
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a library that swallows a cancellation must not hang shutdown
            _done, pending = await asyncio.wait(self._tasks, timeout=5)
            for task in pending:
                log.warning("relay: task %s did not stop", task.get_name())
        self._tasks.clear()
        for stream in self.streams:  # hand streams over at once instead of after the lease
            with contextlib.suppress(Exception):
                await store.release(self.db.pool, stream.name, self.node_id)
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                await self.publisher.stop()

    def wake(self) -> None:
        for stream in self.streams:
            stream.wake.set()

    async def wait_listening(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._listening.wait(), timeout)

    # --- wake-up ---------------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        failures = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn, server_settings={"application_name": "foyer relay listen"})
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=closed: ev.set())
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self.wake())
                failures = 0
                self._listening.set()
                self.wake()  # catch up on anything committed while we were not listening
                await closed.wait()
                log.warning("relay: LISTEN connection closed; reconnecting (polling meanwhile)")
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.warning("relay: cannot LISTEN %s (polling meanwhile)", NOTIFY_CHANNEL, exc_info=failures == 1)
            finally:
                self._listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(_backoff(failures, 0.5, 15.0))

    async def _idle(self, stream: _Stream, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stream.wake.wait(), seconds)
        stream.wake.clear()

    # --- one stream ------------------------------------------------------------------------

    async def _stream_loop(self, stream: _Stream) -> None:
        s = self.settings
        failures = 0
        while True:
            try:
                if stream.consumer is None and self.publisher is not None and not self.publisher.started:
                    await self.publisher.start()
                position = stream.position
                if position is None or time.monotonic() - stream.leased_at > s.relay_lease_seconds / 3:
                    state = await store.claim(self._pool, stream.name, self.node_id, s.relay_lease_seconds)
                    if state is None:  # another node works on it; look again before its lease could expire
                        stream.position = None
                        await asyncio.sleep(s.relay_lease_seconds / 3 * (0.8 + 0.4 * random.random()))
                        continue
                    position, stream.leased_at = state.position, time.monotonic()
                # else: the lease was taken or renewed less than a third of its length ago, and the
                # cursor is the one this node left: no claim round trip per round.
                stream.position = None  # known again only when the round ends well
                stream.wake.clear()
                stream.working = True
                try:
                    position = await self._work(stream, position)
                finally:
                    stream.working = False
                stream.position = position
                if self._stopping:
                    return
                failures = 0
                if s.relay_linger_ms and stream.delivered >= _BUSY_ROUND:
                    await asyncio.sleep(s.relay_linger_ms / 1000)  # let a busy outbox fill a bigger batch
                await self._idle(stream, s.relay_poll_seconds)
            except asyncio.CancelledError:
                raise
            except LeaseLost:
                log.info("relay: stream %s moved to another node", stream.name)
                failures = 0
            except Exception as exc:
                failures += 1
                if self.metrics is not None:
                    self.metrics.failures.labels(stream.name).inc()
                log.warning("relay: stream %s failed (%s); retrying", stream.name, _describe(exc),
                            exc_info=failures == 1)
                await asyncio.sleep(_backoff(failures, s.relay_retry_base_seconds, s.relay_retry_max_seconds))

    async def _work(self, stream: _Stream, position: Position) -> Position:
        """Deliver batches until the stream has caught up; returns the new cursor and counts the
        events read in `stream.delivered`. Renews the lease in the background."""
        stream.lost = False
        stream.delivered = 0
        renewer = asyncio.get_running_loop().create_task(self._renew(stream))
        try:
            while not self._stopping:
                batch = await store.fetch_batch(self._pool, position, types=stream.types,
                                                limit=self.settings.relay_batch_size)
                short = len(batch.events) < self.settings.relay_batch_size
                stream.delivered += len(batch.events)
                if not batch.events:
                    if batch.tail is not None and position < batch.tail:
                        await self._advance(stream, batch.tail, [])
                        position = batch.tail
                    return position
                if stream.consumer is None:
                    position = await self._publish(stream, position, batch)
                else:
                    position = await self._deliver(stream, position, batch)
                if position != batch.events[-1][0]:
                    continue  # stopped inside the batch (a dead letter): read on from there
                if short and batch.tail is not None and position < batch.tail:
                    await self._advance(stream, batch.tail, [])
                    position = batch.tail
                if short:
                    return position
            return position
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew(self, stream: _Stream) -> None:
        while True:
            await asyncio.sleep(self.settings.relay_lease_seconds / 3)
            try:
                state = await store.claim(self._pool, stream.name, self.node_id, self.settings.relay_lease_seconds)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("relay: cannot renew the lease of %s", stream.name, exc_info=True)
                continue
            if state is None:
                stream.lost = True
                return
            stream.leased_at = time.monotonic()

    async def _advance(self, stream: _Stream, to: Position, delivered: list, count: int | None = None) -> None:
        if stream.lost or not await store.advance(
            self._pool, stream.name, self.node_id, to, delivered=delivered, record=stream.consumer is not None,
            lease_seconds=self.settings.relay_lease_seconds, count=count,
        ):
            raise LeaseLost(stream.name)
        stream.leased_at = time.monotonic()  # advancing renews the lease

    async def _deliver(self, stream: _Stream, position: Position, batch: store.Batch) -> Position:
        consumer = stream.consumer
        assert consumer is not None
        already = await store.delivered_ids(self._pool, stream.name, [e.id for _, e in batch.events])
        done: list = []
        flushed = position
        last_flush = time.monotonic()
        for pos, event in batch.events:
            if stream.lost:
                raise LeaseLost(stream.name)
            if self._stopping:
                break  # record what was delivered, below; the rest waits for the next owner
            if event.id not in already:
                try:
                    async with asyncio.timeout(HANDLER_TIMEOUT_SECONDS):  # no extra task per event
                        await consumer.handle(event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if done or flushed != position:  # keep what succeeded before this event
                        await self._advance(stream, position, done)
                        done, flushed = [], position
                    if not await self._retry(stream, pos, event, exc):
                        position = flushed = pos  # dead-lettered: the cursor is already past it
                        last_flush = time.monotonic()
                        continue
                done.append(event.id)
                if self.metrics is not None:
                    self.metrics.delivered.labels(stream.name).inc()
            position = pos
            now = time.monotonic()
            if now - last_flush >= FLUSH_INTERVAL_SECONDS:
                await self._advance(stream, position, done)
                done, flushed, last_flush = [], position, now
        if done or flushed != position:
            await self._advance(stream, position, done)
        return position

    async def _retry(self, stream: _Stream, pos: Position, event: OutboxEvent, first: Exception) -> bool:
        """Retry one failed event with backoff; True once handled, False once dead-lettered."""
        s = self.settings
        consumer = stream.consumer
        assert consumer is not None
        exc: Exception = first
        while True:
            if self.metrics is not None:
                self.metrics.failures.labels(stream.name).inc()
            attempts = await store.record_failure(self._pool, stream.name, self.node_id, _describe(exc))
            if attempts == 0:
                raise LeaseLost(stream.name)
            if attempts >= s.relay_max_attempts:
                await self._dead_letter(stream, pos, event, attempts, exc)
                return False
            delay = _backoff(attempts, s.relay_retry_base_seconds, s.relay_retry_max_seconds)
            log.warning("relay: %s failed on %s %s (attempt %d/%d, retry in %.1fs): %s", stream.name, event.type,
                        event.id, attempts, s.relay_max_attempts, delay, _describe(exc))
            await asyncio.sleep(delay)
            if stream.lost:
                raise LeaseLost(stream.name)
            try:
                async with asyncio.timeout(HANDLER_TIMEOUT_SECONDS):
                    await consumer.handle(event)
                return True
            except asyncio.CancelledError:
                raise
            except Exception as again:
                exc = again

    async def _dead_letter(
        self, stream: _Stream, pos: Position, event: OutboxEvent, attempts: int, exc: BaseException
    ) -> None:
        async with self._pool.slots, self.db.pool.acquire() as conn:
            moved = await store.dead_letter(conn, stream.name, self.node_id, pos, event, attempts=attempts,
                                            error=_describe(exc), lease_seconds=self.settings.relay_lease_seconds)
        if not moved:
            raise LeaseLost(stream.name)
        if self.metrics is not None:
            self.metrics.dead_letters.labels(stream.name).inc()
        log.error("relay: dead-lettered %s %s (seq %d) for %s after %d attempts: %s", event.type, event.id,
                  event.seq, stream.name, attempts, _describe(exc))

    async def _publish(self, stream: _Stream, position: Position, batch: store.Batch) -> Position:
        assert self.publisher is not None
        events = [e for _, e in batch.events]
        try:
            await self.publisher.publish(events)
        except PermanentPublishError as exc:
            if exc.index > 0:
                position = batch.events[exc.index - 1][0]
                await self._advance(stream, position, [], exc.index)
                if self.metrics is not None:
                    self.metrics.published.inc(exc.index)
            pos, event = batch.events[exc.index]
            await self._dead_letter(stream, pos, event, 1, exc.cause)
            return pos
        await self._advance(stream, batch.events[-1][0], [], len(events))
        if self.metrics is not None:
            self.metrics.published.inc(len(events))
            self.metrics.delivered.labels(stream.name).inc(len(events))
        return batch.events[-1][0]

    # --- housekeeping ----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        """Mark rows every active stream passed as published; prune old ones. Idempotent on every node."""
        retention = self.settings.outbox_retention_hours * 3600
        last_prune = 0.0
        failures = 0
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
            try:
                await store.mark_published(self._pool, self.stream_names,
                                           active_within_seconds=ACTIVE_STREAM_WINDOW_SECONDS)
                if time.monotonic() - last_prune > PRUNE_INTERVAL_SECONDS:
                    last_prune = time.monotonic()
                    for _ in range(100):  # bounded per sweep; the next sweep goes on
                        if await store.prune(self._pool, older_than_seconds=retention) < 10_000:
                            break
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.warning("relay: sweep failed", exc_info=failures == 1)
                await asyncio.sleep(_backoff(failures, 1.0, 30.0))

    async def _sample_loop(self) -> None:
        assert self.metrics is not None
        while True:
            try:
                lag = await store.outbox_lag(self._pool)
                self.metrics.pending.set(lag.pending)
                self.metrics.oldest.set(lag.oldest_pending_seconds)
                for row in await store.stream_lags(self._pool, self.stream_names):
                    self.metrics.behind.labels(row["name"]).set(row["behind"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("relay: sampling failed", exc_info=True)
            await asyncio.sleep(SAMPLE_INTERVAL_SECONDS)


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Capped exponential backoff with jitter (50-100% of the step)."""
    step = min(cap, base * (2 ** max(0, attempt - 1)))
    return step * (0.5 + random.random() / 2)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


Handler = Callable[[OutboxEvent], Awaitable[None]]
