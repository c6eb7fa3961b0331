"""Small helpers shared by the notification triggers: parsing outbox data, formatting times and places."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def uuid_of(data: dict[str, Any], *names: str) -> uuid.UUID | None:
    """The first of `names` in `data` that holds a UUID, else None."""
    for name in names:
        value = data.get(name)
        if value:
            try:
                return uuid.UUID(str(value))
            except ValueError:
                continue
    return None


def tz(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def when(starts_at: datetime, ends_at: datetime | None, timezone: str | None) -> str:
    """'Tue 14 May 2030, 14:30–15:15 (Europe/Berlin)' in the event's time zone."""
    zone = tz(timezone)
    s = starts_at.astimezone(zone)
    text = f"{s:%a} {s.day} {s:%b %Y}, {s:%H:%M}"
    if ends_at is not None:
        e = ends_at.astimezone(zone)
        text += f"–{e:%H:%M}" if e.date() == s.date() else f" – {e:%a} {e.day} {e:%b %Y}, {e:%H:%M}"
    return f"{text} ({zone.key})"


def clock(at: datetime, timezone: str | None) -> str:
    return f"{at.astimezone(tz(timezone)):%H:%M}"


def venue_text(venue: Any) -> str:
    if not isinstance(venue, dict):
        return ""
    parts = [venue.get("name"), venue.get("address"), venue.get("city")]
    return ", ".join(str(p) for p in parts if p)


def snippet(text: str, limit: int = 180) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


FIELD_LABELS = {"starts_at": "start time", "ends_at": "end time", "room": "room", "title": "title",
                "track": "track", "abstract": "description", "status": "status", "capacity": "capacity",
                "speakers": "speakers"}


def describe_fields(fields: list[str] | tuple[str, ...]) -> list[str]:
    return [f"New {FIELD_LABELS.get(f, f.replace('_', ' '))}" for f in fields]
