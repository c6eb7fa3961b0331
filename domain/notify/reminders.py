"""The reminders scheduler: session reminders and end-of-session feedback prompts, once across nodes.

Every node runs `Scheduler.run`. Each tick, in one transaction, it inserts claim rows
(`session_reminders`, `session_feedback_prompts`) with ON CONFLICT DO NOTHING and writes outbox
facts for what it claimed:
- `session.reminder_due` `{session_id, starts_at, user_ids}` (≤ 500 users per fact) for
  bookmarked sessions of published events starting within `reminder_lead_minutes`;
- `session.feedback_prompt_due` `{session_id, ends_at}` for sessions that ended within
  `feedback_prompt_window_minutes`.
A claim and its fact commit together, so a reminder is neither lost (crash before commit: the
next tick claims it) nor sent twice (the unique claim row), however many nodes scan. A session
that moves gets a new reminder for its new start (the claim key includes `starts_at`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from datetime import datetime

from domain.notify.queue_worker import retry_delay
from domain.notify.triggers import FEEDBACK_PROMPT_DUE, REMINDER_DUE
from domain.services import Core
from storage import notify as store
from storage import outbox

log = logging.getLogger("foyer.notify.scheduler")

CLAIM_LIMIT = 5000
USERS_PER_FACT = 500


class Scheduler:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.settings = core.settings.notify

    async def run(self) -> None:
        # Start at a random point of the interval so nodes started together do not scan in lockstep.
        await asyncio.sleep(random.uniform(0, self.settings.scheduler_interval_seconds))
        failures = 0
        while True:
            try:
                await self.tick()
                failures = 0
                delay = self.settings.scheduler_interval_seconds
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("reminder scheduler tick failed")
                delay = retry_delay(failures, base=1.0, cap=self.settings.scheduler_interval_seconds * 4)
            await asyncio.sleep(delay)

    async def tick(self) -> tuple[int, int]:
        """One scan; returns (reminders claimed, prompts claimed)."""
        reminders = await self._reminders()
        prompts = await self._prompts()
        return reminders, prompts

    async def _reminders(self) -> int:
        async with self.core.db.transaction("claim_session_reminders") as conn:
            rows = await store.claim_due_reminders(conn, lead_seconds=self.settings.reminder_lead_minutes * 60,
                                                   limit=CLAIM_LIMIT)
            if not rows:
                return 0
            groups: dict[tuple, list[str]] = defaultdict(list)
            for r in rows:
                groups[(r["session_id"], r["starts_at"])].append(str(r["user_id"]))
            events = await store.session_event_ids(conn, [sid for sid, _ in groups])
            for (session_id, starts_at), users in groups.items():
                for i in range(0, len(users), USERS_PER_FACT):
                    await outbox.append(conn, type=REMINDER_DUE, event_id=events.get(session_id), data={
                        "session_id": str(session_id), "starts_at": _iso(starts_at),
                        "user_ids": users[i:i + USERS_PER_FACT]})
        return len(rows)

    async def _prompts(self) -> int:
        async with self.core.db.transaction("claim_feedback_prompts") as conn:
            rows = await store.claim_feedback_prompts(
                conn, window_seconds=self.settings.feedback_prompt_window_minutes * 60, limit=CLAIM_LIMIT)
            if not rows:
                return 0
            events = await store.session_event_ids(conn, [r["session_id"] for r in rows])
            for r in rows:
                await outbox.append(conn, type=FEEDBACK_PROMPT_DUE, event_id=events.get(r["session_id"]),
                                    data={"session_id": str(r["session_id"]), "ends_at": _iso(r["ends_at"])})
        return len(rows)


def _iso(at: datetime) -> str:
    return at.isoformat()
