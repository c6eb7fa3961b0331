"""Input types and validation rules for events, sessions and speakers.

Two layers of validation, both answering `validation_failed` with field-level `details`:

1. Shape (msgspec, at decode time in `handlers.api`): types, required fields, lengths, numeric
   ranges, unknown fields rejected (`forbid_unknown_fields=True` is the mass-assignment defence:
   `id`, `owner_id`, `status`, `schedule_version`, `role`, ... cannot be set by a body).
2. Meaning (`check_*` below, in the domain): IANA time zones, https URLs, tag normalisation,
   ends after starts, both-or-neither coordinates. Every problem is collected, then reported
   together, so a client fixes a form in one round trip.

Datetimes must carry a UTC offset; they are stored and returned as UTC instants, and the event's
`timezone` tells clients how to display them.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import UNSET, UnsetType

from domain.errors import validation_failed

# --- limits (part of the API contract, documented in docs/schedule.md) ----------------------------
TITLE_MAX = 200
DESCRIPTION_MAX = 20_000
TAGS_MAX = 10
TAG_LENGTH_MAX = 32
URL_MAX = 2048
SPEAKER_LINKS_MAX = 10
SESSION_SPEAKERS_MAX = 20
EVENT_DURATION_MAX_DAYS = 366

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=TITLE_MAX)]
Description = Annotated[str, msgspec.Meta(max_length=DESCRIPTION_MAX)]
Instant = Annotated[datetime, msgspec.Meta(tz=True)]
TimeZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Url = Annotated[str, msgspec.Meta(min_length=8, max_length=URL_MAX)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=TAGS_MAX)]
LiveAccess = Literal["public", "ticket_holders", "staff"]
MemberRole = Literal["organizer", "moderator", "staff", "attendee"]
TeamRole = Literal["organizer", "moderator", "staff"]
ShortText = Annotated[str, msgspec.Meta(max_length=100)]
Capacity = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
SpeakerIds = Annotated[list[uuid.UUID], msgspec.Meta(max_length=SESSION_SPEAKERS_MAX)]


class Venue(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """A physical venue. `country` is an ISO 3166-1 alpha-2 code; coordinates are WGS 84 degrees,
    given both or neither."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    city: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2}$")]
    address: Annotated[str, msgspec.Meta(max_length=300)] = ""
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None


class EventCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    starts_at: Instant
    ends_at: Instant
    timezone: TimeZoneName = "UTC"
    description: Description = ""
    venue: Venue | None = None
    cover_image_url: Url | None = None
    tags: Tags = []
    live_access: LiveAccess = "ticket_holders"


class EventPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present are changed; `null` clears `venue` / `cover_image_url`."""

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    starts_at: Instant | UnsetType = UNSET
    ends_at: Instant | UnsetType = UNSET
    timezone: TimeZoneName | UnsetType = UNSET
    venue: Venue | None | UnsetType = UNSET
    cover_image_url: Url | None | UnsetType = UNSET
    tags: Tags | UnsetType = UNSET
    live_access: LiveAccess | UnsetType = UNSET


class SessionCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    starts_at: Instant
    ends_at: Instant
    abstract: Description = ""
    room: ShortText = ""
    track: ShortText = ""
    capacity: Capacity | None = None
    speaker_ids: SpeakerIds = []


class SessionPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present are changed; `speaker_ids` replaces the whole (ordered) list."""

    title: Title | UnsetType = UNSET
    abstract: Description | UnsetType = UNSET
    starts_at: Instant | UnsetType = UNSET
    ends_at: Instant | UnsetType = UNSET
    room: ShortText | UnsetType = UNSET
    track: ShortText | UnsetType = UNSET
    capacity: Capacity | None | UnsetType = UNSET
    speaker_ids: SpeakerIds | UnsetType = UNSET


class SpeakerLink(msgspec.Struct, forbid_unknown_fields=True):
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
    url: Url


SpeakerLinks = Annotated[list[SpeakerLink], msgspec.Meta(max_length=SPEAKER_LINKS_MAX)]


class SpeakerCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    bio: Annotated[str, msgspec.Meta(max_length=5000)] = ""
    photo_url: Url | None = None
    links: SpeakerLinks = []


class SpeakerPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)] | UnsetType = UNSET
    bio: Annotated[str, msgspec.Meta(max_length=5000)] | UnsetType = UNSET
    photo_url: Url | None | UnsetType = UNSET
    links: SpeakerLinks | UnsetType = UNSET


# --- meaning --------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG_OK = re.compile(r"^[^\W_](?:[\w-]*[^\W_])?$")
_SLUG_STRIP = re.compile(r"[^a-z0-9]+")


class Problems:
    """Collects field-level problems; `raise_if_any()` raises one `validation_failed` for all."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            raise validation_failed(self.items)


def clean_text(value: str, field: str, problems: Problems, *, required: bool = False) -> str:
    """Trim surrounding whitespace and refuse control characters (newlines/tabs allowed)."""
    value = value.strip()
    if required and not value:
        problems.add(field, "must not be blank")
    if _CONTROL.search(value):
        problems.add(field, "must not contain control characters")
    return value


def clean_line(value: str, field: str, problems: Problems, *, required: bool = False) -> str:
    """A single-line text: like `clean_text`, and no line breaks or tabs either."""
    value = clean_text(value, field, problems, required=required)
    if "\n" in value or "\r" in value or "\t" in value:
        problems.add(field, "must be a single line")
    return value


def check_timezone(name: str, field: str, problems: Problems) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        problems.add(field, "must be an IANA time zone name such as Europe/Berlin")
    return name


def check_https_url(url: str, field: str, problems: Problems) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        ok = parts.scheme == "https" and bool(parts.hostname) and "." in (parts.hostname or "") \
            and not _CONTROL.search(url) and " " not in url and parts.username is None
    except ValueError:
        ok = False
    if not ok:
        problems.add(field, "must be an https:// URL with a host name")
    return url


def normalize_tag(raw: str, field: str, problems: Problems) -> str | None:
    """Case-folded, NFKC-normalised, spaces/underscores become '-'; then 1–32 letters, digits or
    inner dashes, else a problem is recorded and None returned."""
    tag = unicodedata.normalize("NFKC", raw).strip().casefold()
    tag = re.sub(r"[\s_]+", "-", tag)
    tag = re.sub(r"-{2,}", "-", tag).strip("-")
    if not tag or len(tag) > TAG_LENGTH_MAX or not _TAG_OK.match(tag):
        problems.add(field, f"must be 1-{TAG_LENGTH_MAX} letters, digits or dashes")
        return None
    return tag


def normalize_tags(tags: list[str], field: str, problems: Problems) -> list[str]:
    """Each tag normalised (`normalize_tag`); duplicates dropped, first occurrence wins."""
    out: list[str] = []
    for i, raw in enumerate(tags):
        tag = normalize_tag(raw, f"{field}.{i}", problems)
        if tag is not None and tag not in out:
            out.append(tag)
    return out


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def check_range(starts_at: datetime, ends_at: datetime, problems: Problems, *, max_days: int | None = None) -> None:
    if ends_at <= starts_at:
        problems.add("ends_at", "must be after starts_at")
    elif max_days is not None and (ends_at - starts_at).days >= max_days:
        problems.add("ends_at", f"an event may last at most {max_days} days")
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if not 2000 <= value.year <= 2200:
            problems.add(name, "must be between the years 2000 and 2200")


def venue_dict(venue: Venue | None, problems: Problems, field: str = "venue") -> dict[str, Any] | None:
    if venue is None:
        return None
    if (venue.lat is None) != (venue.lon is None):
        problems.add(f"{field}.lat" if venue.lat is None else f"{field}.lon", "give both lat and lon, or neither")
    return {
        "name": clean_line(venue.name, f"{field}.name", problems, required=True),
        "address": clean_text(venue.address, f"{field}.address", problems),
        "city": clean_line(venue.city, f"{field}.city", problems, required=True),
        "country": venue.country.upper(),
        "lat": venue.lat,
        "lon": venue.lon,
    }


def slugify(title: str, *, max_length: int = 60) -> str:
    """ASCII, lower-case, dash-separated; 'event' when nothing is left (e.g. an all-CJK title)."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = _SLUG_STRIP.sub("-", ascii_title.lower()).strip("-")[:max_length].strip("-")
    return slug or "event"


def links_list(links: list[SpeakerLink], problems: Problems, field: str = "links") -> list[dict[str, str]]:
    return [
        {"label": clean_line(link.label, f"{field}.{i}.label", problems, required=True),
         "url": check_https_url(link.url, f"{field}.{i}.url", problems)}
        for i, link in enumerate(links)
    ]


def unique_ids(ids: list[uuid.UUID], field: str, problems: Problems) -> list[uuid.UUID]:
    if len(set(ids)) != len(ids):
        problems.add(field, "must not repeat a speaker")
    return list(dict.fromkeys(ids))


__all__ = [
    "UNSET", "EventCreate", "EventPatch", "Problems", "SessionCreate", "SessionPatch", "SpeakerCreate",
    "SpeakerLink", "SpeakerPatch", "UnsetType", "Venue", "check_https_url", "check_range", "check_timezone",
    "clean_line", "clean_text", "links_list", "normalize_tag", "normalize_tags", "slugify", "unique_ids", "utc", "venue_dict",
]
