"""The notify capability's service objects, built once per node by server/components/notify.py."""

from __future__ import annotations

from dataclasses import dataclass

from domain.notify.account_email import AccountEmails
from domain.notify.calendar import Calendars
from domain.notify.dispatch import Notifier
from domain.notify.email import EmailService
from domain.notify.feedback import Feedback
from domain.notify.push import PushWorker
from domain.notify.reminders import Scheduler
from domain.notify.share import Sharing
from domain.notify.triggers import Triggers


@dataclass(slots=True)
class NotifyHub:
    push: PushWorker
    notifier: Notifier
    email: EmailService
    accounts: AccountEmails
    calendars: Calendars
    triggers: Triggers
    scheduler: Scheduler
    sharing: Sharing
    feedback: Feedback
