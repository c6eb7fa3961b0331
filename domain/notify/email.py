"""The email queue: consumers enqueue, a worker on every node builds, sends and retries.

Guarantees:
- One email per dedupe key (`<outbox event id>:<subject>:<recipient>`, or per order for order
  confirmations): `enqueue` ignores keys seen before, so a redelivered outbox event never emails
  twice. Enqueueing is one INSERT, so consumers finish fast whatever the audience size or the
  SMTP server's state (the relay gives a consumer limited time and attempts).
- Each row is claimed by one worker at a time (SKIP LOCKED + a lease). The message is built at
  send time by the builder named in its spec (`template`, `account`, `order`), so side effects of
  building (a one-time token) happen only for an email actually being sent, and data (tickets) is
  current. A worker that dies after the SMTP server accepted a message but before recording it
  resends it after the lease (the only duplicate window; the resend carries the same Message-ID,
  except for token emails whose token is new).
- Transient failures (4xx, timeouts, connection errors) retry after `base × 2^(attempt-1)`
  jittered, capped at `email_retry_max_seconds`, up to `email_max_attempts`; permanent ones (5xx,
  a build that fails) are `failed` at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from domain.notify.queue_worker import QueueWorker, retry_delay
from domain.services import Core
from integrations.email.compose import EmailComposer
from integrations.email.mailer import Mailer
from storage import notify as store
from storage.notify import EmailRow

log = logging.getLogger("foyer.email")

LEASE_SECONDS = 300.0
RETENTION_DAYS = 14

Builder = Callable[[store.ClaimedEmail], Awaitable[EmailMessage | None]]


class EmailService(QueueWorker):
    name = "email"
    retention_days = RETENTION_DAYS

    def __init__(self, core: Core, mailer: Mailer, composer: EmailComposer) -> None:
        self.core = core
        self.settings = core.settings.notify
        self.mailer = mailer
        self.composer = composer
        self.builders: dict[str, Builder] = {"template": self._build_template}
        super().__init__()
        self._warned = False
        self.sent = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self.mailer.enabled

    def register(self, name: str, builder: Builder) -> None:
        self.builders[name] = builder

    # --- producing ------------------------------------------------------------------------

    @staticmethod
    def templated(*, dedupe_key: str, kind: str, user_id: Any, template: str, context: dict[str, Any],
                  to_addr: str, to_name: str) -> EmailRow:
        """A queue row for a plain templated email (context must be JSON: strings, numbers, lists, dicts)."""
        return EmailRow(dedupe_key=dedupe_key, kind=kind, user_id=user_id, spec={
            "builder": "template", "template": template, "context": context, "to_addr": to_addr,
            "to_name": to_name})

    async def enqueue(self, rows: Sequence[EmailRow]) -> int:
        if not rows:
            return 0
        if not self.mailer.enabled:
            if not self._warned:
                log.warning("email is off (FOYER_SMTP_HOST unset): %d email(s) not queued", len(rows))
                self._warned = True
            return 0
        added = await store.enqueue_email(self.core.db.pool, rows)
        if added:
            self.wake()
        return added

    # --- the worker (domain/notify/queue_worker.py runs the loop) ---------------------------------
    def poll_seconds(self) -> float:
        return self.settings.email_poll_seconds

    async def next_due(self) -> datetime | None:
        return await store.next_email_due(self.core.db.pool)

    async def purge_finished(self, older_than_days: int) -> None:
        await store.purge_finished_email(self.core.db.pool, older_than_days=older_than_days)

    async def process_once(self) -> int:
        """Claim a batch of due emails, build and send them over one SMTP connection; returns the count."""
        if not self.mailer.enabled:
            return 0
        pool = self.core.db.pool
        claimed = await store.claim_emails(pool, limit=self.settings.email_batch_size, lease_seconds=LEASE_SECONDS)
        if not claimed:
            return 0
        ready: list[tuple[store.ClaimedEmail, EmailMessage]] = []
        for item in claimed:
            builder = self.builders.get(item.spec.get("builder", ""))
            try:
                message = await builder(item) if builder is not None else None
            except Exception as exc:
                log.exception("building email %s failed", item.kind)
                await store.finish_email(pool, item.dedupe_key, state="failed", error=f"build: {type(exc).__name__}")
                self.failed += 1
                continue
            if message is None:
                await store.finish_email(pool, item.dedupe_key, state="failed", error="nothing to send")
                continue
            ready.append((item, message))
        if ready:
            results = await self.mailer.send_batch([m for _, m in ready])
            for (item, _), error in zip(ready, results, strict=True):
                await self._record(item, error)
        return len(claimed)

    async def _record(self, item: store.ClaimedEmail, error: Any) -> None:
        pool = self.core.db.pool
        if error is None:
            await store.finish_email(pool, item.dedupe_key, state="sent")
            self.sent += 1
        elif error.transient and item.attempts < self.settings.email_max_attempts:
            delay = retry_delay(item.attempts, base=self.settings.email_retry_base_seconds,
                                cap=self.settings.email_retry_max_seconds)
            await store.retry_email(pool, item.dedupe_key, delay=delay, error=str(error)[:300])
        else:
            await store.finish_email(pool, item.dedupe_key, state="failed", error=str(error)[:300])
            self.failed += 1
            log.warning("email %s to user %s failed for good: %s", item.kind, item.user_id, error)

    async def _build_template(self, item: store.ClaimedEmail) -> EmailMessage:
        s = item.spec
        return self.composer.build(name=s["template"], context=s["context"], to_addr=s["to_addr"],
                                   to_name=s.get("to_name", ""), dedupe_key=item.dedupe_key, kind=item.kind)
