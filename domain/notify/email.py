"""Email delivery for outbox consumers: once per (outbox event, recipient), retried while transient.

Guarantees:
- Before building or sending, each email is claimed in `email_deliveries` under its dedupe key
  (`<outbox event id>:<recipient>`): an email already sent, or being sent under a live lease,
  is skipped, so a redelivered outbox event does not send it again. (A node that dies between
  the SMTP server accepting the message and recording it will resend it after the lease: that
  window is the only duplicate, and the resend carries the same Message-ID.)
- `build` runs only after the claim, so side effects of building (creating a one-time token)
  happen once per attempt that actually sends.
- Transient SMTP failures leave the email in `retry` and make `deliver` raise `RetryLater`, which
  the relay answers by redelivering the event later with backoff; already-sent recipients are
  skipped then. After `email_max_attempts` the email is `failed` and no longer blocks the event.
  Permanent failures (5xx, e.g. unknown mailbox) are `failed` at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

from domain.services import Core
from integrations.email.compose import EmailComposer
from integrations.email.mailer import Mailer
from storage import notify as store

log = logging.getLogger("foyer.email")

LEASE_SECONDS = 300.0
BATCH = 50


class RetryLater(Exception):
    """Some emails of this event hit a transient failure: deliver the event again later."""


@dataclass(frozen=True, slots=True)
class EmailJob:
    dedupe_key: str
    kind: str
    user_id: uuid.UUID | None
    build: Callable[[], Awaitable[EmailMessage | None]]  # None: nothing to send after all


@dataclass(slots=True)
class EmailReport:
    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class EmailService:
    def __init__(self, core: Core, mailer: Mailer, composer: EmailComposer) -> None:
        self.core = core
        self.mailer = mailer
        self.composer = composer
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.mailer.enabled

    async def deliver(self, jobs: Sequence[EmailJob]) -> EmailReport:
        report = EmailReport()
        if not jobs:
            return report
        if not self.mailer.enabled:
            if not self._warned:
                log.warning("email is off (FOYER_SMTP_HOST unset): %d email(s) not sent", len(jobs))
                self._warned = True
            report.skipped.extend(j.dedupe_key for j in jobs)
            return report
        for start in range(0, len(jobs), BATCH):
            await self._deliver_batch(jobs[start:start + BATCH], report)
        if report.retry:
            raise RetryLater(f"{len(report.retry)} email(s) hit a transient SMTP failure")
        return report

    async def _deliver_batch(self, jobs: Sequence[EmailJob], report: EmailReport) -> None:
        pool = self.core.db.pool
        max_attempts = self.core.settings.notify.email_max_attempts
        ready: list[tuple[EmailJob, EmailMessage]] = []
        for job in jobs:
            if not await store.claim_email(pool, dedupe_key=job.dedupe_key, kind=job.kind, user_id=job.user_id,
                                           lease_seconds=LEASE_SECONDS, max_attempts=max_attempts):
                report.skipped.append(job.dedupe_key)
                continue
            try:
                message = await job.build()
            except Exception as exc:
                log.exception("building email %s failed", job.kind)
                await store.finish_email(pool, job.dedupe_key, state="failed", error=f"build: {type(exc).__name__}")
                report.failed.append(job.dedupe_key)
                continue
            if message is None:
                await store.finish_email(pool, job.dedupe_key, state="failed", error="nothing to send")
                report.skipped.append(job.dedupe_key)
                continue
            ready.append((job, message))
        if not ready:
            return
        results = await self.mailer.send_batch([m for _, m in ready])
        for (job, _), error in zip(ready, results, strict=True):
            if error is None:
                await store.finish_email(pool, job.dedupe_key, state="sent")
                report.sent.append(job.dedupe_key)
            elif error.transient and await store.email_attempts(pool, job.dedupe_key) < max_attempts:
                await store.finish_email(pool, job.dedupe_key, state="retry", error=str(error)[:300])
                report.retry.append(job.dedupe_key)
            else:
                await store.finish_email(pool, job.dedupe_key, state="failed", error=str(error)[:300])
                report.failed.append(job.dedupe_key)
                log.warning("email %s to user %s failed for good: %s", job.kind, job.user_id, error)
