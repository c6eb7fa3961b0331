"""Settings of attendee-facing channels: push (FCM), email (SMTP), calendar feeds, share pages."""

from __future__ import annotations

from dataclasses import dataclass

from config.fields import setting


@dataclass(frozen=True, slots=True)
class NotifySettings:
    email_from: str = setting("Foyer <no-reply@localhost>", help="From address of every email Foyer sends.")

    def validate(self) -> None:
        return None
