"""Outbox consumers that turn domain facts into push/in-app notifications and emails.

Consumers (names are stable: the relay keys its bookkeeping on them):
- `notify.push`  — in-app + push, through `Notifier` (preferences, presence, quiet hours, queue);
- `notify.email` — emails, queued through `EmailService` (once per event and recipient) and sent
  by the email worker.

Facts consumed (producer → what happens):
- `schedule.changed` (events): per `session` change with a relevant field (`starts_at`, `ends_at`,
  `room`, `title`, `status`): "schedule change" / "cancelled" to users who bookmarked it; per
  `event` change of `starts_at`/`ends_at`/`venue`/`timezone`: to the event's audience.
- `event.cancelled` (events): to the event's audience.
- `session.reminder_due` (notify scheduler): reminder to the claimed users; expires at the start.
- `session.feedback_prompt_due` (notify scheduler): "rate this session" to bookmarking attendees.
- `announcement.posted` (live): to the event's audience.
- `ticket.issued` (ticketing): "order confirmed" push and the confirmation email with QR tickets
  and an .ics attachment, once per order.
- `question.answered` (live): to the asker.
- `account.password_reset_requested`, `account.email_verification_requested`, `user.registered`:
  account emails (domain/notify/account_email.py).

Every handler is idempotent: push is keyed by the outbox event id (plus the subject when one
fact fans out), email by (event, recipient) — or by order for order confirmations.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.consumers import Consumer
from domain.notify import account_email
from domain.notify.content import clock, describe_fields, snippet, uuid_of, venue_text, when
from domain.notify.dispatch import Notification, Notifier
from domain.notify.email import EmailService
from domain.notify.orders import OrderMail
from domain.services import Core
from storage import notify as store
from storage.notify import EmailRow
from storage.outbox import OutboxEvent

log = logging.getLogger("foyer.notify.triggers")

SESSION_FIELDS = frozenset({"starts_at", "ends_at", "room", "title", "status"})
EVENT_FIELDS = frozenset({"starts_at", "ends_at", "venue", "timezone"})
REMINDER_DUE = "session.reminder_due"
FEEDBACK_PROMPT_DUE = "session.feedback_prompt_due"
ANNOUNCEMENT_TYPES = frozenset({"announcement.posted", "announcement.created"})
ORDER_CONFIRMED = "ticket.issued"
QUESTION_ANSWERED = "question.answered"

PUSH_TYPES = frozenset({"schedule.changed", "event.cancelled", REMINDER_DUE, FEEDBACK_PROMPT_DUE, ORDER_CONFIRMED,
                        QUESTION_ANSWERED} | ANNOUNCEMENT_TYPES)
EMAIL_TYPES = frozenset({"schedule.changed", "event.cancelled", REMINDER_DUE, ORDER_CONFIRMED,
                         account_email.RESET_REQUESTED, account_email.VERIFY_REQUESTED,
                         account_email.USER_REGISTERED} | ANNOUNCEMENT_TYPES)


class Triggers:
    def __init__(self, core: Core, notifier: Notifier, email: EmailService, accounts: account_email.AccountEmails,
                 orders: OrderMail) -> None:
        self.core = core
        self.notifier = notifier
        self.email = email
        self.accounts = accounts
        self.orders = orders

    def consumers(self) -> list[Consumer]:
        return [Consumer(name="notify.push", handle=self.on_push, types=PUSH_TYPES),
                Consumer(name="notify.email", handle=self.on_email, types=EMAIL_TYPES)]

    def _base_url(self) -> str:
        return (self.core.settings.notify.app_url or self.core.settings.base_url).rstrip("/")

    # --- push / in-app ----------------------------------------------------------------------

    async def on_push(self, event: OutboxEvent) -> None:
        handler = self._push_handlers().get(event.type)
        if handler is not None:
            await handler(event)

    def _push_handlers(self) -> dict[str, Callable[[OutboxEvent], Awaitable[None]]]:
        handlers: dict[str, Callable[[OutboxEvent], Awaitable[None]]] = {
            "schedule.changed": self._push_schedule, "event.cancelled": self._push_event_cancelled,
            REMINDER_DUE: self._push_reminder, FEEDBACK_PROMPT_DUE: self._push_feedback_prompt,
            ORDER_CONFIRMED: self._push_order, QUESTION_ANSWERED: self._push_answered,
        }
        for t in ANNOUNCEMENT_TYPES:
            handlers[t] = self._push_announcement
        return handlers

    async def _push_schedule(self, event: OutboxEvent) -> None:
        for subject, notification, users in await self._schedule_notifications(event):
            await self.notifier.notify(notification, [u.user_id for u in users])
            log.debug("schedule change %s notified", subject)

    async def _schedule_notifications(self, event: OutboxEvent) -> list[tuple[str, Notification, list[store.Recipient]]]:
        out: list[tuple[str, Notification, list[store.Recipient]]] = []
        pool = self.core.db.pool
        now = datetime.now(UTC)
        for change in event.data.get("changes") or ():
            fields = set(change.get("fields") or ())
            entity_id = uuid_of(change, "entity_id")
            if entity_id is None or change.get("op") != "updated":
                continue
            if change.get("entity") == "session" and fields & SESSION_FIELDS:
                s = await store.session_with_event(pool, entity_id)
                if s is None or s["ends_at"] < now or s["event_status"] != "published":
                    continue
                cancelled = s["status"] == "cancelled"
                if cancelled and "status" not in fields:
                    continue  # edits of an already-cancelled session are not news
                title = f"Cancelled: {s['title']}" if cancelled else f"Schedule change: {s['title']}"
                body = (f"{s['event_title']}: this session will not take place." if cancelled else
                        f"Now {when(s['starts_at'], s['ends_at'], s['timezone'])}"
                        + (f" · {s['room']}" if s["room"] else ""))
                n = Notification(key=f"{event.id}:{entity_id}", kind="schedule_change", title=title, body=body,
                                 data={"type": "session.cancelled" if cancelled else "session.changed",
                                       "event_id": str(s["event_id"]), "session_id": str(entity_id)},
                                 collapse_key=f"session:{entity_id}", urgent=True)
                out.append((f"session:{entity_id}", n, await store.session_audience(pool, entity_id)))
            elif change.get("entity") == "event" and fields & EVENT_FIELDS:
                e = await store.event_row(pool, entity_id)
                if e is None or e["status"] != "published" or e["ends_at"] < now:
                    continue
                where = venue_text(e["venue"])
                n = Notification(key=f"{event.id}:{entity_id}", kind="schedule_change",
                                 title=f"Update: {e['title']}",
                                 body=f"Now {when(e['starts_at'], e['ends_at'], e['timezone'])}"
                                 + (f" · {where}" if where else ""),
                                 data={"type": "event.changed", "event_id": str(entity_id)},
                                 collapse_key=f"event:{entity_id}")
                out.append((f"event:{entity_id}", n, await store.event_audience(pool, entity_id)))
        return out

    async def _push_event_cancelled(self, event: OutboxEvent) -> None:
        event_id = event.event_id or uuid_of(event.data, "event_id")
        if event_id is None:
            return
        e = await store.event_row(self.core.db.pool, event_id)
        if e is None:
            return
        reason = snippet(event.data.get("reason") or "", 120)
        n = Notification(key=str(event.id), kind="schedule_change", title=f"Cancelled: {e['title']}",
                         body=reason or "This event will not take place.",
                         data={"type": "event.cancelled", "event_id": str(event_id)}, urgent=True)
        await self.notifier.notify(n, [u.user_id for u in await store.event_audience(self.core.db.pool, event_id)])

    async def _push_reminder(self, event: OutboxEvent) -> None:
        s = await self._reminder_session(event)
        if s is None:
            return
        minutes = max(1, round((s["starts_at"] - datetime.now(UTC)).total_seconds() / 60))
        n = Notification(key=str(event.id), kind="reminder", title=f"In {minutes} min: {s['title']}",
                         body=f"{clock(s['starts_at'], s['timezone'])}" + (f" · {s['room']}" if s["room"] else "")
                         + f" · {s['event_title']}",
                         data={"type": REMINDER_DUE, "event_id": str(s["event_id"]), "session_id": str(s["id"])},
                         expires_at=s["starts_at"], urgent=True, collapse_key=f"reminder:{s['id']}")
        await self.notifier.notify(n, _user_ids(event.data.get("user_ids")))

    async def _reminder_session(self, event: OutboxEvent) -> Any:
        session_id = uuid_of(event.data, "session_id")
        if session_id is None:
            return None
        s = await store.session_with_event(self.core.db.pool, session_id)
        if s is None or s["status"] != "scheduled" or s["starts_at"].isoformat() != event.data.get("starts_at"):
            return None  # cancelled or moved since it was claimed (a moved session gets a new claim)
        return s

    async def _push_feedback_prompt(self, event: OutboxEvent) -> None:
        session_id = uuid_of(event.data, "session_id")
        if session_id is None:
            return
        pool = self.core.db.pool
        s = await store.session_with_event(pool, session_id)
        if s is None or s["status"] != "scheduled":
            return
        n = Notification(key=str(event.id), kind="feedback_prompt", title=f"How was {s['title']}?",
                         body="Rate the session in one tap; your comment goes to the organizers only.",
                         data={"type": FEEDBACK_PROMPT_DUE, "event_id": str(s["event_id"]),
                               "session_id": str(session_id)},
                         expires_at=datetime.now(UTC) + timedelta(days=1))
        await self.notifier.notify(n, await store.session_attendees(pool, session_id))

    async def _push_announcement(self, event: OutboxEvent) -> None:
        event_id = event.event_id or uuid_of(event.data, "event_id")
        if event_id is None:
            return
        e = await store.event_row(self.core.db.pool, event_id)
        if e is None:
            return
        text = _announcement_text(event.data)
        n = Notification(key=str(event.id), kind="announcement",
                         title=snippet(event.data.get("title") or e["title"], 80), body=snippet(text, 180),
                         data={"type": "announcement", "event_id": str(event_id),
                               "announcement_id": str(event.data.get("announcement_id") or event.data.get("id") or "")})
        await self.notifier.notify(n, [u.user_id for u in await store.event_audience(self.core.db.pool, event_id)])

    async def _push_order(self, event: OutboxEvent) -> None:
        order_id, user_id = uuid_of(event.data, "order_id"), uuid_of(event.data, "user_id")
        if order_id is None or user_id is None:
            return
        e = await store.event_row(self.core.db.pool, event.event_id) if event.event_id else None
        count = len(event.data.get("tickets") or ())
        n = Notification(key=f"order:{order_id}", kind="order", title="Order confirmed",
                         body=f"Your {count} ticket{'s' if count != 1 else ''}"
                         + (f" for {e['title']}" if e else "") + " are ready.",
                         data={"type": "order.confirmed", "order_id": str(order_id),
                               "event_id": str(event.event_id or "")})
        await self.notifier.notify(n, [user_id])

    async def _push_answered(self, event: OutboxEvent) -> None:
        asker = uuid_of(event.data, "author_id", "asked_by", "user_id")
        if asker is None:
            return
        question = snippet(event.data.get("text") or "", 120)
        question_id = event.data.get("question_id") or event.data.get("id")
        # Once per question: marking it answered, unanswered and answered again notifies once.
        key = f"answered:{question_id}" if question_id else str(event.id)
        n = Notification(key=key, kind="question_answered", title="Your question was answered",
                         body=question or "Open the session to see the answer.",
                         data={"type": QUESTION_ANSWERED, "event_id": str(event.event_id or ""),
                               "session_id": str(event.data.get("session_id") or ""),
                               "question_id": str(question_id or "")})
        await self.notifier.notify(n, [asker])

    # --- email ------------------------------------------------------------------------------

    async def on_email(self, event: OutboxEvent) -> None:
        t = event.type
        if t in (account_email.RESET_REQUESTED, account_email.VERIFY_REQUESTED, account_email.USER_REGISTERED):
            await self.accounts.handle(event)
        elif t == ORDER_CONFIRMED:
            await self.orders.handle(event)
        elif t == "schedule.changed":
            await self._email_schedule(event)
        elif t == "event.cancelled":
            await self._email_event_cancelled(event)
        elif t == REMINDER_DUE:
            await self._email_reminder(event)
        elif t in ANNOUNCEMENT_TYPES:
            await self._email_announcement(event)

    async def _email_jobs(self, *, event: OutboxEvent, subject: str, kind: str, template: str,
                          recipients: list[store.Recipient], context: dict[str, Any]) -> list[EmailRow]:
        """Queue rows for the recipients whose email preferences want this kind."""
        prefs = await store.get_preferences_many(self.core.db.pool, [r.user_id for r in recipients])
        return [self.email.templated(dedupe_key=f"{event.id}:{subject}:{r.user_id}", kind=kind, user_id=r.user_id,
                                     template=template, context={**context, "name": r.name}, to_addr=r.email,
                                     to_name=r.name)
                for r in recipients if prefs[r.user_id].wants_email(kind)]

    def _common(self) -> dict[str, Any]:
        return {"site_name": account_email.site_name(self.core.settings.notify.email_from)}

    async def _email_schedule(self, event: OutboxEvent) -> None:
        jobs: list[EmailRow] = []
        for subject, n, users in await self._schedule_notifications(event):
            session_id = uuid_of(n.data, "session_id")
            if session_id is None:
                continue  # event-level changes: push only
            s = await store.session_with_event(self.core.db.pool, session_id)
            if s is None:
                continue
            fields = next((c.get("fields") or () for c in event.data.get("changes") or ()
                           if c.get("entity_id") == str(session_id)), ())
            context = {**self._common(), "cancelled": s["status"] == "cancelled", "event_title": s["event_title"],
                       "session": _session_ctx(s), "changes": describe_fields([f for f in fields if f != "status"]),
                       "session_url": f"{self._base_url()}/e/{s['event_slug']}"}
            jobs += await self._email_jobs(event=event, subject=subject, kind="schedule_change",
                                           template="schedule_changed", recipients=users, context=context)
        await self.email.enqueue(jobs)

    async def _email_event_cancelled(self, event: OutboxEvent) -> None:
        event_id = event.event_id or uuid_of(event.data, "event_id")
        e = await store.event_row(self.core.db.pool, event_id) if event_id else None
        if e is None:
            return
        reason = (event.data.get("reason") or "").strip()
        context = {**self._common(), "event_title": e["title"], "title": "This event has been cancelled",
                   "text": reason or f"{e['title']} will not take place.",
                   "event_url": f"{self._base_url()}/e/{e['slug']}"}
        recipients = await store.event_audience(self.core.db.pool, e["id"])
        await self.email.enqueue(await self._email_jobs(event=event, subject="event", kind="schedule_change",
                                                        template="announcement", recipients=recipients,
                                                        context=context))

    async def _email_reminder(self, event: OutboxEvent) -> None:
        s = await self._reminder_session(event)
        if s is None:
            return
        recipients = await store.users_by_ids(self.core.db.pool, _user_ids(event.data.get("user_ids")))
        context = {**self._common(), "event_title": s["event_title"], "session": _session_ctx(s),
                   "session_url": f"{self._base_url()}/e/{s['event_slug']}"}
        await self.email.enqueue(await self._email_jobs(event=event, subject="reminder", kind="reminder",
                                                        template="session_reminder", recipients=recipients,
                                                        context=context))

    async def _email_announcement(self, event: OutboxEvent) -> None:
        event_id = event.event_id or uuid_of(event.data, "event_id")
        e = await store.event_row(self.core.db.pool, event_id) if event_id else None
        if e is None:
            return
        context = {**self._common(), "event_title": e["title"],
                   "title": snippet(event.data.get("title") or "Announcement", 120),
                   "text": _announcement_text(event.data), "event_url": f"{self._base_url()}/e/{e['slug']}"}
        recipients = await store.event_audience(self.core.db.pool, e["id"])
        await self.email.enqueue(await self._email_jobs(event=event, subject="announcement", kind="announcement",
                                                        template="announcement", recipients=recipients,
                                                        context=context))


def _user_ids(values: Any) -> list[uuid.UUID]:
    out = []
    for v in values or ():
        try:
            out.append(uuid.UUID(str(v)))
        except ValueError:
            continue
    return out


def _announcement_text(data: dict[str, Any]) -> str:
    return str(data.get("text") or data.get("body") or data.get("message") or "")[:5000]


def _session_ctx(s: Any) -> dict[str, Any]:
    return {"title": s["title"], "when": when(s["starts_at"], s["ends_at"], s["timezone"]), "room": s["room"]}
