"""When an event is cancelled, its open orders are cancelled and paid ones refunded in full.

An outbox consumer of `event.cancelled` (published by the events capability in the transaction
that cancels the event). Each order is cancelled in its own transaction by
`PaymentService.cancel_for_cancelled_event`, which skips orders that are no longer open, so a
redelivered fact (at-least-once) refunds nobody twice; refunds go through the same provider
idempotency keys and retry loop as organizer refunds.
"""

from __future__ import annotations

import logging
import uuid

from domain.consumers import Consumer
from domain.tickets.payments import PaymentService
from storage import orders as order_store
from storage.db import Database
from storage.outbox import OutboxEvent

log = logging.getLogger("foyer.tickets.event_cancel")


class EventCancellationRefunds:
    def __init__(self, db: Database, payments: PaymentService) -> None:
        self.db = db
        self.payments = payments

    async def handle(self, fact: OutboxEvent) -> None:
        event_id = fact.event_id or uuid.UUID(str(fact.data["event_id"]))
        async with self.db.connection() as conn:
            order_ids = await order_store.open_order_ids(conn, event_id)
        reason = "event cancelled" + (f": {fact.data['reason']}" if fact.data.get("reason") else "")
        for order_id in order_ids:
            await self.payments.cancel_for_cancelled_event(order_id, reason=reason)
        if order_ids:
            log.info("event %s cancelled: %d open orders cancelled/refunded", event_id, len(order_ids))

    def consumer(self) -> Consumer:
        return Consumer(name="tickets.event_cancelled_refunds", handle=self.handle,
                        types=frozenset({"event.cancelled"}))
