"""Publishing outbox envelopes to Kafka with aiokafka.

Guarantees:
- The producer is idempotent (`enable_idempotence=True`, which implies `acks=all`): a retried
  produce request never duplicates or reorders records within a partition.
- Records are keyed by the outbox row's `key` (the Foyer event id, by default), so every fact of
  one event lands on one partition, in the order the relay publishes it.
- `publish` returns only when every record of the batch is acknowledged by the broker (or
  raises); the relay moves its cursor only then. A crash in between publishes the batch again
  on restart: delivery to Kafka is at-least-once, and consumers deduplicate by envelope `id`.

Topics: `<prefix><domain>`, the domain chosen from the event type by `TOPIC_DOMAINS`
(docs/events.md lists them). Value: the envelope as JSON (UTF-8). Headers: `type`, `id`,
`version`, `content-type`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError

from storage.outbox import OutboxEvent

log = logging.getLogger("foyer.kafka")

# Type prefix -> topic domain. First match wins; `ticket.checked_in` goes to checkins before
# other `ticket.*` facts go to orders. Unknown prefixes go to "other" (documented, never dropped).
TOPIC_DOMAINS: tuple[tuple[str, str], ...] = (
    ("ticket.checked_in", "checkins"),
    ("checkin.", "checkins"),
    ("order.", "orders"),
    ("ticket.", "orders"),
    ("payment.", "orders"),
    ("refund.", "orders"),
    ("schedule.", "schedule"),
    ("session.", "schedule"),
    ("event.", "schedule"),
    ("speaker.", "schedule"),
    ("message.", "live"),
    ("question.", "live"),
    ("vote.", "live"),
    ("poll.", "live"),
    ("room.", "live"),
    ("announcement.", "live"),
    ("reaction.", "live"),
    ("feedback.", "engagement"),
    ("referral.", "engagement"),
    ("share.", "engagement"),
    ("user.", "accounts"),
    ("account.", "accounts"),
    ("support.", "accounts"),
)
DOMAINS: tuple[str, ...] = tuple(dict.fromkeys(d for _, d in TOPIC_DOMAINS)) + ("other",)


def topic_domain(event_type: str) -> str:
    for prefix, domain in TOPIC_DOMAINS:
        if event_type == prefix or event_type.startswith(prefix):
            return domain
    return "other"


def topic_for(prefix: str, event_type: str) -> str:
    return prefix + topic_domain(event_type)


def encode(event: OutboxEvent) -> bytes:
    return orjson.dumps(event.envelope())


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    bootstrap: str
    topic_prefix: str = "foyer."
    client_id: str = "foyer"
    linger_ms: int = 5
    request_timeout_ms: int = 30_000
    create_topics: bool = True
    partitions: int = 6
    replication_factor: int = 1
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    idempotent: bool = True  # only the benchmark's naive baseline turns this off

    @classmethod
    def from_settings(cls, settings: Any) -> KafkaConfig:
        r = settings.reach
        return cls(
            bootstrap=settings.kafka_bootstrap or "", topic_prefix=r.kafka_topic_prefix,
            client_id=r.kafka_client_id or "foyer", linger_ms=r.kafka_linger_ms,
            create_topics=r.kafka_create_topics, partitions=r.kafka_topic_partitions,
            replication_factor=r.kafka_replication_factor, security_protocol=r.kafka_security_protocol,
            sasl_mechanism=r.kafka_sasl_mechanism or None, sasl_username=r.kafka_sasl_username or None,
            sasl_password=str(r.kafka_sasl_password) or None,
        )

    def client_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap.split(","), "client_id": self.client_id,
                              "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kw["ssl_context"] = ssl.create_default_context()
        if self.sasl_mechanism:
            kw.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                      sasl_plain_password=self.sasl_password)
        return kw


class PermanentPublishError(Exception):
    """One record can never be published (e.g. larger than the broker accepts): dead-letter it."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"record {index}: {cause!r}")
        self.index = index
        self.cause = cause


class KafkaPublisher:
    """One idempotent aiokafka producer per process, shared by the relay's `kafka` stream."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self._producer: AIOKafkaProducer | None = None
        self._topics_ready: set[str] = set()

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        c = self.config
        producer = AIOKafkaProducer(
            **c.client_kwargs(),
            enable_idempotence=c.idempotent,
            acks="all" if c.idempotent else 1,
            linger_ms=c.linger_ms,
            request_timeout_ms=c.request_timeout_ms,
        )
        if c.idempotent:
            _use_init_producer_id_v3(producer)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        if c.create_topics:
            await self.ensure_topics(c.topic_prefix + d for d in DOMAINS)

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        """Create the topics Foyer writes to (idempotent; existing topics are left alone)."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        wanted = [t for t in topics if t not in self._topics_ready]
        if not wanted:
            return
        admin = AIOKafkaAdminClient(**self.config.client_kwargs())
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                try:
                    await admin.create_topics([
                        NewTopic(t, self.config.partitions, self.config.replication_factor) for t in missing
                    ])
                except TopicAlreadyExistsError:
                    pass
            self._topics_ready.update(wanted)
        finally:
            await admin.close()

    async def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Send every event and wait for all acknowledgements; raise on the first failure.

        Raises `PermanentPublishError` (with the index) for a record that can never be accepted,
        or a `KafkaError` for failures worth retrying (broker down, timeouts).
        """
        producer = self._producer
        if producer is None:
            raise KafkaError("kafka publisher is not started")
        prefix = self.config.topic_prefix
        futures = []
        for index, event in enumerate(events):
            headers = [("type", event.type.encode()), ("id", str(event.id).encode()),
                       ("version", str(event.version).encode()), ("content-type", b"application/json")]
            try:
                fut = await producer.send(
                    topic_for(prefix, event.type), encode(event), key=event.key.encode(), headers=headers,
                )
            except MessageSizeTooLargeError as exc:
                _raise_first_failure(await asyncio.gather(*futures, return_exceptions=True))
                raise PermanentPublishError(index, exc) from exc
            futures.append(fut)
        _raise_first_failure(await asyncio.gather(*futures, return_exceptions=True))

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise unless the cluster answers a metadata request within `timeout`."""
        producer = self._producer
        if producer is None:
            raise KafkaError("kafka publisher is not started")
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)


def _raise_first_failure(results: list[Any]) -> None:
    """Raise for the first failed record in publish order (earlier records were acknowledged)."""
    for index, result in enumerate(results):
        if isinstance(result, MessageSizeTooLargeError):
            raise PermanentPublishError(index, result)
        if isinstance(result, BaseException):
            raise result


async def kafka_ping(config: KafkaConfig, timeout: float = 3.0) -> list[str]:
    """Check a cluster without a long-lived producer (admin health view); returns its topic names."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**config.client_kwargs(), request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        return sorted(await asyncio.wait_for(admin.list_topics(), timeout))
    finally:
        await admin.close()


# --- InitProducerId v3 (KIP-360) ------------------------------------------------------------------
#
# aiokafka 0.12-0.14 only speaks InitProducerId v0, which has no producer id/epoch fields. Java
# clients send v3+ with producer_id = epoch = -1 for a new idempotent producer; some brokers that
# implement the newer versions (Tansu's in-memory engine among them) refuse v0 for a
# non-transactional producer. When the broker supports v3 we send v3 exactly as the Java client
# does; otherwise v0 as before. Kafka ≥ 2.5 supports v3, so behaviour there is unchanged.
# If aiokafka's internals ever move, we leave the stock handler in place (and log once).

def _use_init_producer_id_v3(producer: AIOKafkaProducer) -> None:
    try:
        from aiokafka.producer import sender as sender_mod
        from aiokafka.protocol.api import Request, RequestStruct, Response
        from aiokafka.protocol.transaction import InitProducerIdRequest_v0
        from aiokafka.protocol.types import CompactString, Int16, Int32, Int64, Schema, TaggedFields

        sender = producer._sender
        if not hasattr(sender, "_do_init_pid") or not hasattr(sender_mod, "InitPIDHandler"):
            raise AttributeError("aiokafka sender layout changed")
    except (ImportError, AttributeError) as exc:  # pragma: no cover - depends on aiokafka version
        log.warning("kafka: InitProducerId v3 unavailable (%s); using aiokafka's v0", exc)
        return

    global _V3
    if _V3 is None:
        class InitProducerIdResponseV3(Response):
            API_KEY = 22
            API_VERSION = 3
            SCHEMA = Schema(("throttle_time_ms", Int32), ("error_code", Int16), ("producer_id", Int64),
                            ("producer_epoch", Int16), ("tags", TaggedFields))

        class InitProducerIdRequestV3(RequestStruct):
            FLEXIBLE_VERSION = True
            API_KEY = 22
            API_VERSION = 3
            RESPONSE_TYPE = InitProducerIdResponseV3
            SCHEMA = Schema(("transactional_id", CompactString("utf-8")), ("transaction_timeout_ms", Int32),
                            ("producer_id", Int64), ("producer_epoch", Int16), ("tags", TaggedFields))

        class InitProducerId(Request[InitProducerIdRequest_v0 | InitProducerIdRequestV3]):  # type: ignore[misc]
            API_KEY = 22

            def __init__(self, transactional_id: str | None, transaction_timeout_ms: int) -> None:
                self.transactional_id = transactional_id
                self.transaction_timeout_ms = transaction_timeout_ms

            def build(self, request_struct_class: Any) -> Any:
                if request_struct_class.API_VERSION >= 3:
                    return request_struct_class(self.transactional_id, self.transaction_timeout_ms, -1, -1, {})
                return request_struct_class(self.transactional_id, self.transaction_timeout_ms)

        class Handler(sender_mod.InitPIDHandler):
            def create_request(self) -> Any:
                txn = self._sender._txn_manager
                return InitProducerId(txn.transactional_id, txn.transaction_timeout_ms)

        _V3 = Handler

    handler_cls = _V3

    async def do_init_pid(node_id: int) -> bool:
        return await handler_cls(sender).do(node_id)

    sender._do_init_pid = do_init_pid


_V3: Any = None
