"""Writing domain facts to the transactional outbox.

`append` must be called with the connection of the transaction that makes the fact true, so the
fact is recorded if and only if that transaction commits ("publish after commit", DESIGN.md §3).
A `NOTIFY foyer_outbox` in the same transaction wakes relays on every node at commit time, so
delivery latency does not depend on a polling interval. Delivery itself (in-process consumers,
Socket.IO broadcasts, Kafka) belongs to the relay; it is at-least-once, and every envelope carries
a unique `id` that consumers use to deduplicate.

Envelope (versioned, documented in docs/events.md):
    {id, type, version, occurred_at, event_id, data}
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

NOTIFY_CHANNEL = "foyer_outbox"


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    seq: int
    id: uuid.UUID
    type: str
    version: int
    event_id: uuid.UUID | None
    key: str
    data: dict[str, Any]
    occurred_at: datetime

    def envelope(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "version": self.version,
            "occurred_at": self.occurred_at.isoformat(),
            "event_id": str(self.event_id) if self.event_id else None,
            "data": self.data,
        }

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> OutboxEvent:
        return cls(
            seq=row["seq"], id=row["id"], type=row["type"], version=row["version"],
            event_id=row["event_id"], key=row["key"], data=row["data"], occurred_at=row["occurred_at"],
        )


async def append(
    conn: asyncpg.Connection,
    *,
    type: str,
    data: dict[str, Any],
    event_id: uuid.UUID | None = None,
    key: str | None = None,
    version: int = 1,
    notify: bool = True,
) -> OutboxEvent:
    """Record a domain fact inside the caller's transaction.

    `type` is dotted, past tense (`order.paid`, `session.changed`). `key` orders delivery on Kafka
    (same key, same partition); it defaults to the event id, else the outbox id.
    `notify=False` skips the NOTIFY for high-volume facts nobody waits for (chat messages, room
    joins): in PostgreSQL a NOTIFY serialises the commits of every notifying transaction in the
    cluster; the relay still picks the row up on its next wake-up or poll.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.append must run inside the transaction that makes the fact true")
    row = await conn.fetchrow(
        """INSERT INTO outbox (type, version, event_id, key, data)
           VALUES ($1, $2, $3, coalesce($4, $3::uuid::text, gen_random_uuid()::text), $5)
           RETURNING seq, id, type, version, event_id, key, data, occurred_at""",
        type, version, event_id, key, data,
    )
    if notify:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return OutboxEvent.from_row(row)
