"""The per-node group-commit batcher of holds.

Requests from many concurrent buyers on this node wait up to `window` (or until `max_batch` are
queued) and are committed in ONE transaction (`storage.orders.place_batch`), each request getting
its own outcome. One batch is in flight per node; the next one fills while it commits.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from domain.errors import FoyerError
from domain.tickets.models import HoldOutcome, HoldRequest

log = logging.getLogger("foyer.tickets.gate")

CommitBatch = Callable[[list[HoldRequest]], Awaitable[dict[uuid.UUID, HoldOutcome]]]


@dataclass(slots=True)
class _Pending:
    request: HoldRequest
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class HoldBatcher:
    """Collects holds for up to `window_s` (or `max_batch`) and commits them together.

    `commit(batch)` runs one transaction and returns an outcome per order id. If a whole batch
    fails with anything but `busy`, its requests are retried one by one, so one bad request
    cannot fail its neighbours."""

    def __init__(self, commit: CommitBatch, *, max_batch: int, window_s: float) -> None:
        self.commit = commit
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.commit_delay_s = 0.0  # tests only (FOYER_TEST_HOLD_COMMIT_DELAY_MS): a window to kill the node
        self.batches = 0
        self.requests = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="foyer.hold_batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for p in self._queue:
            if not p.future.done():
                p.future.set_exception(FoyerError("unavailable", "this node is shutting down"))
        self._queue.clear()

    async def submit(self, request: HoldRequest) -> HoldOutcome:
        if self._task is None:
            raise FoyerError("unavailable", "ticket sales are not running on this node")
        pending = _Pending(request)
        self._queue.append(pending)
        self._wakeup.set()
        return await pending.future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if len(self._queue) < self.max_batch and self.window_s > 0:
                await asyncio.sleep(self.window_s)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            if not self._queue:
                self._wakeup.clear()
            if not batch:
                continue
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(FoyerError("unavailable", "this node is shutting down"))
                raise
            except Exception:  # never let the loop die; requests got their errors in _commit
                log.exception("hold batch failed")

    async def _commit(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.requests += len(batch)
        if self.commit_delay_s:
            await asyncio.sleep(self.commit_delay_s)
        try:
            outcomes = await self.commit([p.request for p in batch])
        except FoyerError as exc:
            if exc.code != "busy" and len(batch) > 1:
                for p in batch:
                    await self._commit([p])
                return
            _fail(batch, exc)
            return
        except Exception as exc:
            if len(batch) > 1:
                for p in batch:
                    await self._commit([p])
                return
            log.exception("hold failed")
            _fail(batch, exc)
            return
        for p in batch:
            if not p.future.done():
                outcome = outcomes.get(p.request.order_id)
                if outcome is None:
                    p.future.set_exception(FoyerError("internal_error", "hold outcome missing"))
                else:
                    p.future.set_result(outcome)


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for p in batch:
        if not p.future.done():
            p.future.set_exception(exc)
