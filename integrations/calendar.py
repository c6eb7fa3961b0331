"""iCalendar (RFC 5545) documents with `icalendar`, and "add to calendar" links.

Guarantees of `build_calendar`:
- One VEVENT per item with a stable UID (the caller derives it from the entity id), DTSTAMP in
  UTC, SEQUENCE as given (callers bump it when a significant field changes, see
  `fingerprint`), STATUS CONFIRMED or CANCELLED (a cancelled session stays in feeds so calendar
  apps mark it instead of silently keeping the old slot).
- Times carry the event's IANA zone (TZID) and a matching VTIMEZONE is included (generated from
  zoneinfo for the span of the items, ±1 year); UTC items are written with `Z` and need none.
- A feed declares REFRESH-INTERVAL / X-PUBLISHED-TTL so subscribed apps poll for changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event

PRODID = "-//Foyer//Foyer events//EN"


@dataclass(frozen=True, slots=True)
class CalItem:
    uid: str
    title: str
    starts_at: datetime
    ends_at: datetime
    timezone: str = "UTC"
    description: str = ""
    location: str = ""
    url: str | None = None
    cancelled: bool = False
    sequence: int = 0
    last_modified: datetime | None = None
    categories: tuple[str, ...] = field(default_factory=tuple)

    def fingerprint(self) -> bytes:
        """Hash of the fields whose change must bump SEQUENCE (RFC 5545 §3.8.7.4)."""
        parts = [self.title, self.starts_at.astimezone(UTC).isoformat(), self.ends_at.astimezone(UTC).isoformat(),
                 self.timezone, self.location, self.description, "cancelled" if self.cancelled else "confirmed"]
        return hashlib.sha256("\x1f".join(parts).encode()).digest()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _local(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(UTC) if zone.key == "UTC" else at.astimezone(zone)


def build_calendar(items: Sequence[CalItem], *, name: str, description: str = "",
                   refresh_minutes: int | None = None, now: datetime | None = None) -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    if description:
        cal.add("x-wr-caldesc", description)
    if refresh_minutes:
        cal.add("refresh-interval", timedelta(minutes=refresh_minutes), parameters={"VALUE": "DURATION"})
        cal.add("x-published-ttl", timedelta(minutes=refresh_minutes))
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    first: date | None = None
    last: date | None = None
    for item in items:
        zone = _zone(item.timezone)
        ev = Event()
        ev.add("uid", item.uid)
        ev.add("dtstamp", stamp)
        ev.add("dtstart", _local(item.starts_at, zone))
        ev.add("dtend", _local(item.ends_at, zone))
        ev.add("summary", item.title)
        if item.description:
            ev.add("description", item.description)
        if item.location:
            ev.add("location", item.location)
        if item.url:
            ev.add("url", item.url)
        if item.categories:
            ev.add("categories", list(item.categories))
        ev.add("status", "CANCELLED" if item.cancelled else "CONFIRMED")
        ev.add("sequence", item.sequence)
        ev.add("transp", "TRANSPARENT" if item.cancelled else "OPAQUE")
        if item.last_modified is not None:
            ev.add("last-modified", item.last_modified.astimezone(UTC))
        cal.add_component(ev)
        first = min(first or item.starts_at.date(), item.starts_at.date())
        last = max(last or item.ends_at.date(), item.ends_at.date())
    if first is not None and last is not None:
        cal.add_missing_timezones(first_date=date(first.year - 1, 1, 1), last_date=date(last.year + 2, 1, 1))
    return cal.to_ical()


def _utc_compact(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def google_link(item: CalItem) -> str:
    """Google Calendar "add event" template URL."""
    params = {"action": "TEMPLATE", "text": item.title,
              "dates": f"{_utc_compact(item.starts_at)}/{_utc_compact(item.ends_at)}",
              "details": (item.description[:1000] + (f"\n\n{item.url}" if item.url else "")).strip(),
              "location": item.location, "ctz": _zone(item.timezone).key}
    return "https://calendar.google.com/calendar/render?" + urlencode({k: v for k, v in params.items() if v})


def outlook_link(item: CalItem, *, office365: bool = False) -> str:
    """Outlook.com (or Office 365) deeplink to compose the event."""
    host = "outlook.office.com" if office365 else "outlook.live.com"
    params = {"path": "/calendar/action/compose", "rru": "addevent", "subject": item.title,
              "startdt": item.starts_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
              "enddt": item.ends_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
              "body": (item.description[:1000] + (f"\n\n{item.url}" if item.url else "")).strip(),
              "location": item.location}
    return f"https://{host}/calendar/0/deeplink/compose?" + urlencode({k: v for k, v in params.items() if v})
