"""In-process consumers of outbox facts (socket broadcasts, push, email, analytics, ...).

A capability declares consumers through its `Component.consumers` factory; the outbox relay
(server/relay.py, see docs/events.md) delivers every committed outbox row to each consumer
whose `types` match, after commit, on exactly one node at a time, in `seq` order per consumer.
Delivery is at-least-once: a consumer may see an event again after a crash, so `handle` must be
idempotent (the relay records `(consumer name, event id)` once `handle` returns, and skips
recorded pairs). `handle` raising means "retry later" (with backoff); it must not block the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from storage.outbox import OutboxEvent


@dataclass(frozen=True, slots=True)
class Consumer:
    name: str  # stable identifier, used for delivery bookkeeping: never rename a live consumer
    handle: Callable[[OutboxEvent], Awaitable[None]]
    types: frozenset[str] | None = None  # outbox `type`s wanted; None means every type
