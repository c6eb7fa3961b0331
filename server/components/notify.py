"""Wiring of the notify capability (push, email, calendar, share pages, feedback).

- `setup`: builds the FCM adapter (only when `FOYER_FCM_CREDENTIALS` is set), the push worker,
  the notifier, the mailer and the flows, and stores them under `handlers.devices.NOTIFY`.
- `lifespan`: runs the push and email queue workers and the reminders scheduler on every node
  (all safe to run on many nodes: claims in PostgreSQL are exclusive).
- `consumers`: `notify.push`, `notify.email` (domain/notify/triggers.py) and `notify.referrals`
  (domain/notify/share.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from domain.consumers import Consumer
from domain.notify.account_email import AccountEmails
from domain.notify.calendar import Calendars
from domain.notify.dispatch import Notifier
from domain.notify.email import EmailService
from domain.notify.feedback import Feedback
from domain.notify.hub import NotifyHub
from domain.notify.orders import OrderMail
from domain.notify.push import PushWorker
from domain.notify.reminders import Scheduler
from domain.notify.share import Sharing
from domain.notify.triggers import Triggers
from domain.services import Core
from handlers import account_email, calendar, devices, feedback, share
from handlers.auth import ACCOUNTS
from integrations.email.compose import EmailComposer
from integrations.email.mailer import Mailer
from integrations.push.fcm import FcmAdapter
from server.components import Component

log = logging.getLogger("foyer.notify")


def _fcm(core: Core) -> FcmAdapter | None:
    s = core.settings.notify
    info = s.fcm_credentials_info()
    if info is None:
        return None
    return FcmAdapter(credentials_info=info, project_id=s.fcm_project_id, endpoint=s.fcm_endpoint,
                      token_uri=s.fcm_token_uri, timeout=s.fcm_timeout_seconds, threads=s.push_threads)


class LiveInApp:
    """In-app notifications through the live rooms: cross-node presence and the one emit path.

    A notification is a durable event `notification` in the user's private room `user:{id}`
    (replayed after a reconnect), deduplicated by its id, so a redelivered fact emits it once.
    """

    CHUNK = 500  # presence lookups in flight at once

    def __init__(self, core: Core) -> None:
        self.core = core

    async def online_users(self, user_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        from rooms.presence import is_user_online

        online: set[uuid.UUID] = set()
        for i in range(0, len(user_ids), self.CHUNK):
            chunk = user_ids[i:i + self.CHUNK]
            flags = await asyncio.gather(*(is_user_online(self.core, u) for u in chunk))
            online.update(u for u, on in zip(chunk, flags, strict=True) if on)
        return online

    async def send(self, user_id: uuid.UUID, payload: dict[str, Any]) -> None:
        from rooms.broadcast import publish

        await publish(self.core, room=f"user:{user_id}", event="notification", data=payload,
                      dedupe_key=f"notify:{payload['id']}")


def setup(app: web.Application, core: Core) -> None:
    s = core.settings.notify
    worker = PushWorker(core, _fcm(core))
    notifier = Notifier(core, worker, LiveInApp(core))
    email = EmailService(core, Mailer(s), EmailComposer(sender=s.email_from))
    accounts = AccountEmails(core, email, app[ACCOUNTS].passwords)
    calendars = Calendars(core)
    triggers = Triggers(core, notifier, email, accounts, OrderMail(core, email, calendars))
    app[devices.NOTIFY] = NotifyHub(push=worker, notifier=notifier, email=email, accounts=accounts,
                                    calendars=calendars, triggers=triggers, scheduler=Scheduler(core),
                                    sharing=Sharing(core, calendars), feedback=Feedback(core))


async def lifespan(app: web.Application, core: Core) -> AsyncIterator[None]:
    hub = app[devices.NOTIFY]
    tasks = [asyncio.create_task(hub.scheduler.run(), name="notify-scheduler")]
    if hub.push.enabled:
        tasks.append(asyncio.create_task(hub.push.run(), name="push-worker"))
    else:
        log.info("push is off (FOYER_FCM_CREDENTIALS unset): devices are registered but nothing is sent")
    if hub.email.enabled:
        tasks.append(asyncio.create_task(hub.email.run(), name="email-worker"))
    else:
        log.info("email is off (FOYER_SMTP_HOST unset)")
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if hub.push.adapter is not None:
            hub.push.adapter.close()


def consumers(app: web.Application, core: Core) -> list[Consumer]:
    hub = app[devices.NOTIFY]
    return [*hub.triggers.consumers(), hub.sharing.consumer()]


COMPONENT = Component(
    name="notify",
    routers=(devices.router, account_email.router, calendar.router, share.router, feedback.router),
    setup=setup,
    lifespan=lifespan,
    consumers=consumers,
)
