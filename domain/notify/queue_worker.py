"""The loop shared by Foyer's queue workers (push, email): PostgreSQL queue → an outside service.

Guarantees of `QueueWorker.run` (one per node):
- Rounds run back to back while a round handled something; otherwise the worker sleeps until the
  next row falls due (`next_due`), at most `poll_seconds`, or until `wake()` (a row was queued).
- A failing round is logged and retried with capped, jittered backoff; cancellation always
  propagates (the component's lifespan stops the worker by cancelling it).
- Finished rows older than `retention_days` are purged about once an hour.
The subclass implements one round (`process_once`, claiming rows with SKIP LOCKED and a lease)
and the three queue queries.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime

log = logging.getLogger("foyer.notify")

PURGE_EVERY_SECONDS = 3600.0


def retry_delay(attempt: int, *, base: float, cap: float, retry_after: float | None = None,
                rng: random.Random | None = None) -> float:
    """Capped exponential backoff with jitter, at least Retry-After (itself capped)."""
    r = rng or random
    raw = min(cap, base * (2 ** max(attempt - 1, 0)))
    delay = r.uniform(raw / 2, raw)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


class QueueWorker:
    name = "queue"
    retention_days = 7

    def __init__(self) -> None:
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    # --- what a worker implements ---------------------------------------------------------------
    async def process_once(self) -> int:
        """One round: claim due rows, send them, record outcomes; returns how many were handled."""
        raise NotImplementedError

    async def next_due(self) -> datetime | None:
        raise NotImplementedError

    async def purge_finished(self, older_than_days: int) -> None:
        raise NotImplementedError

    def poll_seconds(self) -> float:
        raise NotImplementedError

    # --- the loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        failures = 0
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                handled = await self.process_once()
                failures = 0
                if loop.time() - last_purge > PURGE_EVERY_SECONDS:
                    last_purge = loop.time()
                    await self.purge_finished(self.retention_days)
                if handled:
                    continue  # more may be due right away
                timeout = await self._idle_timeout()
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("%s worker round failed", self.name)
                timeout = retry_delay(failures, base=1.0, cap=60.0)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _idle_timeout(self) -> float:
        poll = self.poll_seconds()
        due = await self.next_due()
        if due is None:
            return poll
        return min(poll, max(0.05, (due - datetime.now(UTC)).total_seconds()))
