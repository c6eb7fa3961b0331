"""Refunds that reach the provider eventually, or are surfaced to organizers.

Guarantees:
- every refund is sent with the provider idempotency key `refund:<refund id>`, on every attempt and
  from every node, so the money goes back at most once whatever the retries;
- a transient failure (the provider unreachable, 5xx, 429: FoyerError `unavailable`, or anything
  unexpected) leaves the refund `pending` with `last_error` and a next attempt after a capped,
  jittered exponential backoff; a background loop on every node retries due refunds, leasing them
  (SKIP LOCKED + lease) so one node works on a refund at a time, and a node that dies mid-call
  leaves a lease that lapses, then another node retries;
- a refusal the provider will repeat (FoyerError `payment_failed`: 4xx, e.g. charge not
  refundable) or `max_attempts` transient failures make it `failed` with the reason, an outbox fact
  `refund.failed` {refund_id, order_id, amount_cents, attempts, reason}, and the organizers see it
  in `GET /api/events/{id}/refunds?status=failed`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from typing import Any

from domain.errors import FoyerError
from storage import payments as pay_store
from storage.db import Database
from storage.orders import append_outbox

log = logging.getLogger("foyer.tickets.refunds")


class RefundRetrier:
    def __init__(self, *, db: Database, provider: Any, max_attempts: int, base_s: float, cap_s: float,
                 lease_s: float = 60.0) -> None:
        self.db = db
        self.provider = provider
        self.max_attempts = max_attempts
        self.base_s = base_s
        self.cap_s = cap_s
        self.lease_s = lease_s

    def backoff(self, attempts: int) -> float:
        return min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1)) * (0.5 + random.random())

    async def attempt(self, refund: dict[str, Any]) -> str:
        """One provider call for a pending refund {id, order_id, amount_cents, intent_id, attempts?};
        returns the refund's status afterwards (pending | succeeded | failed)."""
        refund_id: uuid.UUID = refund["id"]
        if refund.get("intent_id") is None:  # nothing was captured: nothing to send back
            await pay_store.record_refund_attempt(self.db, refund_id, status="succeeded")
            return "succeeded"
        attempts = int(refund.get("attempts") or 0) + 1
        try:
            result = await self.provider.refund(intent_id=refund["intent_id"], amount_cents=refund["amount_cents"],
                                                idempotency_key=f"refund:{refund_id}")
        except asyncio.CancelledError:
            raise
        except FoyerError as exc:
            reason = f"{exc.code}: {exc.message}"
            if exc.code != "unavailable":
                await self._fail(refund_id, f"refused by the payment provider ({reason})")
                return "failed"
            return await self._transient(refund_id, attempts, reason)
        except Exception as exc:  # unknown: assume transient (the idempotency key makes retries safe)
            return await self._transient(refund_id, attempts, f"{type(exc).__name__}: {exc}")
        status = result.status if result.status in ("pending", "succeeded", "failed") else "pending"
        if status == "failed":
            await self._fail(refund_id, "the payment provider reported the refund failed")
            return "failed"
        await pay_store.record_refund_attempt(
            self.db, refund_id, status=status, provider_refund_id=result.refund_id,
            retry_in_seconds=self.cap_s if status == "pending" else None)  # pending: the webhook settles it
        return status

    async def _transient(self, refund_id: uuid.UUID, attempts: int, reason: str) -> str:
        if attempts >= self.max_attempts:
            await self._fail(refund_id, f"gave up after {attempts} attempts; last error: {reason}")
            return "failed"
        delay = self.backoff(attempts)
        log.warning("refund %s attempt %d failed (%s); retrying in %.1fs", refund_id, attempts, reason, delay)
        await pay_store.record_refund_attempt(self.db, refund_id, status="pending", error=reason,
                                              retry_in_seconds=delay)
        return "pending"

    async def _fail(self, refund_id: uuid.UUID, reason: str) -> None:
        async with self.db.transaction("refunds.fail") as conn:
            row = await pay_store.fail_refund(conn, refund_id, reason)
            if row is not None:
                await append_outbox(conn, [("refund.failed", row["event_id"], {
                    "refund_id": str(row["id"]), "order_id": str(row["order_id"]),
                    "amount_cents": row["amount_cents"], "attempts": row["attempts"], "reason": reason})])
        log.error("refund %s failed for good: %s", refund_id, reason)

    async def run_due(self, limit: int = 20) -> int:
        async with self.db.transaction("refunds.claim") as conn:
            due = await pay_store.claim_due_refunds(conn, limit=limit, lease_seconds=self.lease_s)
        for refund in due:
            await self.attempt(refund)
        return len(due)

    async def loop(self, interval_s: float) -> None:
        """Every node; capped jittered backoff when the loop itself fails."""
        failures = 0
        while True:
            try:
                await asyncio.sleep(interval_s * (0.8 + 0.4 * random.random()))
                while await self.run_due() >= 20:
                    pass
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("refund retry loop failed (%d in a row)", failures)
                await asyncio.sleep(min(60.0, interval_s * 2 ** failures) * (0.5 + random.random()))
