"""The push queue worker: PostgreSQL queue → FCM, with retries, backoff and dead-token cleanup.

Guarantees:
- Each queued message (one notification × one device) is sent until FCM accepts it, it fails
  permanently, it expires (`expires_at`, e.g. a reminder whose session started) or it used
  `push_max_attempts` sends. Transient failures (QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, network)
  are retried after `base × 2^(attempt-1)` seconds, jittered to [½, 1]×, capped at
  `push_retry_max_seconds`, and never earlier than FCM's Retry-After.
- A token FCM reports dead (UNREGISTERED, SENDER_ID_MISMATCH, INVALID_ARGUMENT on the token) is
  deleted with its device; its other queued messages go with it.
- Every node runs a worker; rows are claimed with SKIP LOCKED and a lease, so two workers never
  send the same row concurrently, and a crashed worker's rows become due again after the lease.
- Sends run in pyfcm's thread pool (integrations/push/fcm.py): the loop never blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from config.notify import NotifySettings
from domain.notify.queue_worker import QueueWorker, retry_delay
from domain.services import Core
from integrations.push.fcm import FcmAdapter, Outcome, PushMessage, SendResult
from storage import devices as devices_store

log = logging.getLogger("foyer.push")

LEASE_SECONDS = 120.0  # longer than a batch can take (timeout × batch / threads), shorter than patience
RETENTION_DAYS = 7


class PushWorker(QueueWorker):
    name = "push"
    retention_days = RETENTION_DAYS

    def __init__(self, core: Core, adapter: FcmAdapter | None) -> None:
        self.core = core
        self.settings: NotifySettings = core.settings.notify
        self.adapter = adapter
        super().__init__()
        self.sent = 0  # counters for metrics/diagnostics
        self.failed = 0
        self.invalid_tokens = 0

    @property
    def enabled(self) -> bool:
        return self.adapter is not None

    def poll_seconds(self) -> float:
        return self.settings.push_poll_seconds

    async def next_due(self) -> datetime | None:
        return await devices_store.next_push_due(self.core.db.pool)

    async def purge_finished(self, older_than_days: int) -> None:
        await devices_store.purge_finished_push(self.core.db.pool, older_than_days=older_than_days)

    async def process_once(self) -> int:
        """Claim one batch of due messages, send it, record outcomes; returns how many were claimed."""
        if self.adapter is None:
            return 0
        claimed = await devices_store.claim_push(self.core.db.pool, limit=self.settings.push_batch_size,
                                         lease_seconds=LEASE_SECONDS)
        if not claimed:
            return 0
        messages = [
            PushMessage(
                token=c.token, title=c.payload.get("title", ""), body=c.payload.get("body", ""),
                data=c.payload.get("data") or {}, platform=c.platform, collapse_key=c.payload.get("collapse_key"),
                urgent=bool(c.payload.get("urgent")),
            )
            for c in claimed
        ]
        results = await self.adapter.send_many(messages)
        await self._record(claimed, results)
        return len(claimed)

    async def _record(self, claimed: Sequence[devices_store.ClaimedPush], results: Sequence[SendResult]) -> None:
        s = self.settings
        sent: list[int] = []
        failed: list[tuple[int, str]] = []
        retries: list[tuple[int, float, str]] = []
        dead_devices: set = set()
        for c, r in zip(claimed, results, strict=True):
            if r.outcome is Outcome.SENT:
                sent.append(c.id)
            elif r.outcome is Outcome.INVALID_TOKEN:
                dead_devices.add(c.device_id)
            elif r.outcome is Outcome.RETRY and c.attempts < s.push_max_attempts:
                delay = retry_delay(c.attempts, base=s.push_retry_base_seconds, cap=s.push_retry_max_seconds,
                                    retry_after=r.retry_after)
                retries.append((c.id, delay, f"{r.error_code}: {r.detail or ''}"[:300]))
            else:
                failed.append((c.id, f"{r.error_code}: {r.detail or ''}"[:300]))
        pool = self.core.db.pool
        await devices_store.finish_push(pool, sent, state="sent")
        for ident, error in failed:
            await devices_store.finish_push(pool, [ident], state="failed", error=error)
        await devices_store.retry_push(pool, retries)
        if dead_devices:
            removed = await devices_store.delete_by_ids(pool, list(dead_devices))
            log.info("removed %d device(s) whose FCM token is no longer valid", removed)
        self.sent += len(sent)
        self.failed += len(failed)
        self.invalid_tokens += len(dead_devices)
        if retries:
            log.info("push: %d message(s) will be retried", len(retries))
