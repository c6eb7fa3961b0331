"""Settings of the outbox relay, Kafka, analytics and the admin view."""

from __future__ import annotations

from dataclasses import dataclass

from config.fields import Secret, SettingsError, setting


@dataclass(frozen=True, slots=True)
class ReachSettings:
    kafka_topic_prefix: str = setting("foyer.", help="Prefix of every Kafka topic Foyer publishes to.")
    # --- outbox relay ----------------------------------------------------------------------------
    relay_enabled: bool = setting(
        True, help="Run the outbox relay in this node. Every node may (they coordinate per stream); "
        "set false on serving nodes when dedicated `run.py worker` processes relay instead."
    )
    relay_batch_size: int = setting(
        500, help="Outbox rows a relay stream reads per batch (bounds memory and one Kafka produce round)."
    )
    relay_db_connections: int = setting(
        2, help="Most PostgreSQL connections the relay of one node uses at once, whatever the number of "
        "streams (consumers' own work is not counted)."
    )
    relay_poll_seconds: float = setting(
        0.5, help="Fallback poll interval of the relay; normally it is woken at commit by NOTIFY foyer_outbox."
    )
    relay_linger_ms: float = setting(
        20.0, help="After a relay round that delivered a full load (a busy outbox, e.g. a ticket drop), "
        "wait this long before the next, so events are read in bigger batches with fewer round trips; "
        "a quiet outbox is still read as soon as NOTIFY arrives. 0: never wait."
    )
    relay_lease_seconds: float = setting(
        10.0, help="How long a node owns a relay stream without renewing it; a crashed node's streams "
        "move to another node after this."
    )
    relay_max_attempts: int = setting(
        8, help="Failed deliveries of one event to one consumer before it is dead-lettered "
        "(a poison event must not stall the stream)."
    )
    relay_retry_base_seconds: float = setting(
        0.5, help="First retry delay of a failed delivery; doubles per attempt (with jitter) up to the cap."
    )
    relay_retry_max_seconds: float = setting(30.0, help="Cap of the relay's retry delay.")
    outbox_retention_hours: float = setting(
        72.0, help="Delivered outbox rows and delivery records are deleted after this age."
    )
    # --- Kafka -----------------------------------------------------------------------------------
    kafka_client_id: str = setting("foyer", help="Kafka client id of the relay's producer.")
    kafka_linger_ms: int = setting(5, help="Producer linger: how long records wait to be batched (ms).")
    kafka_create_topics: bool = setting(
        True, help="Create Foyer's topics at start-up when missing (off when topics are managed elsewhere)."
    )
    kafka_topic_partitions: int = setting(6, help="Partitions of topics Foyer creates.")
    kafka_replication_factor: int = setting(
        1, help="Replication factor of topics Foyer creates (use 3 on a production cluster)."
    )
    kafka_security_protocol: str = setting(
        "PLAINTEXT", help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: str = setting("", help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL).")
    kafka_sasl_username: str = setting("", help="SASL user name.")
    kafka_sasl_password: Secret = setting(Secret(""), help="SASL password.", secret=True)
    # --- admin / analytics ----------------------------------------------------------------------
    analytics_live_push_seconds: float = setting(
        5.0, help="How often live figures are pushed to active events' staff rooms (`analytics:live`); "
        "0 turns the push off. One node per round does it."
    )
    node_heartbeat_seconds: float = setting(
        5.0, help="How often a node (or worker) refreshes its entry in the Redis node registry (admin health)."
    )

    def validate(self) -> None:
        if not 1 <= self.relay_batch_size <= 10_000:
            raise SettingsError("FOYER_RELAY_BATCH_SIZE: must be between 1 and 10000")
        if not 1 <= self.relay_db_connections <= 64:
            raise SettingsError("FOYER_RELAY_DB_CONNECTIONS: must be between 1 and 64")
        if not 0 <= self.relay_linger_ms <= 10_000:
            raise SettingsError("relay_linger_ms", "must be between 0 and 10000")
        if self.relay_poll_seconds <= 0:
            raise SettingsError("FOYER_RELAY_POLL_SECONDS: must be positive")
        if self.relay_lease_seconds < 1:
            raise SettingsError("FOYER_RELAY_LEASE_SECONDS: must be at least 1")
        if self.relay_max_attempts < 1:
            raise SettingsError("FOYER_RELAY_MAX_ATTEMPTS: must be at least 1")
        if self.kafka_security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise SettingsError("FOYER_KAFKA_SECURITY_PROTOCOL: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        if self.kafka_topic_partitions < 1 or self.kafka_replication_factor < 1:
            raise SettingsError("FOYER_KAFKA_TOPIC_PARTITIONS/REPLICATION_FACTOR: must be at least 1")
