"""Notification kinds, per-user preferences and quiet hours.

A user without a stored preference row gets `DEFAULTS`. Quiet hours are wall-clock times in the
user's IANA time zone; a window may wrap midnight (22:00–07:00). During quiet hours a push is
deferred to the end of the window (and dropped if it expires first, e.g. a reminder for a session
that has started); in-app notifications are not affected (the user is looking at the app).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.errors import field_error

# Kinds a user can switch on/off per channel. Transactional mail (order confirmation, password
# reset, email verification) is always sent and is not listed here.
PUSH_KINDS: tuple[str, ...] = (
    "schedule_change",  # a bookmarked session (or the event) moved or was cancelled
    "reminder",  # a bookmarked session starts soon
    "announcement",  # organizer announcements to the event
    "order",  # order confirmed
    "question_answered",  # a question you asked was answered
    "feedback_prompt",  # a session you attended ended: rate it
)
EMAIL_KINDS: tuple[str, ...] = ("schedule_change", "reminder", "announcement")

DEFAULT_PUSH = frozenset(PUSH_KINDS)
DEFAULT_EMAIL = frozenset({"schedule_change", "announcement"})


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise field_error("timezone", f"unknown IANA time zone {name!r}") from None


@dataclass(frozen=True, slots=True)
class Preferences:
    user_id: uuid.UUID
    push_kinds: frozenset[str] = DEFAULT_PUSH
    email_kinds: frozenset[str] = DEFAULT_EMAIL
    in_app_and_push: bool = False  # online users get in-app only unless this is set
    quiet_start: time | None = None
    quiet_end: time | None = None
    timezone: str = "UTC"
    stored: bool = field(default=False, compare=False)

    def wants_push(self, kind: str) -> bool:
        return kind in self.push_kinds

    def wants_email(self, kind: str) -> bool:
        return kind in self.email_kinds

    def quiet_until(self, now: datetime) -> datetime | None:
        """If `now` falls inside quiet hours, the UTC instant they end; else None."""
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return None
        tz = zone(self.timezone)
        local = now.astimezone(tz)
        t = local.time().replace(tzinfo=None)
        start, end = self.quiet_start, self.quiet_end
        if start < end:
            inside = start <= t < end
            end_date = local.date()
        else:  # wraps midnight
            inside = t >= start or t < end
            end_date = local.date() + timedelta(days=1) if t >= start else local.date()
        if not inside:
            return None
        # Wall-clock end in the user's zone (fold=0: the first occurrence on DST fall-back days).
        end_local = datetime.combine(end_date, end, tzinfo=tz)
        return end_local.astimezone(UTC)

    def as_dict(self) -> dict:
        return {
            "push": {k: k in self.push_kinds for k in PUSH_KINDS},
            "email": {k: k in self.email_kinds for k in EMAIL_KINDS},
            "in_app_and_push": self.in_app_and_push,
            "quiet_hours": (
                {"start": self.quiet_start.strftime("%H:%M"), "end": self.quiet_end.strftime("%H:%M")}
                if self.quiet_start is not None and self.quiet_end is not None else None
            ),
            "timezone": self.timezone,
        }


def parse_hhmm(value: str, field_name: str) -> time:
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise field_error(field_name, "expected HH:MM (24-hour clock)") from None
