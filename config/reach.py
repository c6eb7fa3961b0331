"""Settings of the outbox relay, Kafka, push, email, calendar and analytics."""

from __future__ import annotations

from dataclasses import dataclass

from config.fields import setting


@dataclass(frozen=True, slots=True)
class ReachSettings:
    kafka_topic_prefix: str = setting("foyer.", help="Prefix of every Kafka topic Foyer publishes to.")

    def validate(self) -> None:
        return None
