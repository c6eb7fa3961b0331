"""`python run.py demo`: demo accounts and a published sample conference, idempotently.

Creates (or reuses, when run again) three accounts — an organizer with two-factor auth enabled,
a moderator and an attendee — and "FoyerConf Demo": a published two-day conference with a venue,
two rooms, four speakers and eight sessions, a moderator on its team, the attendee holding
attendee membership (what a ticket grants) and two sessions in the attendee's agenda.

Everything goes through the same domain functions as the HTTP API (policy checks, validation,
versioned schedule changes, outbox facts), as the organizer. Running it twice changes nothing
but the printed passwords: existing accounts get the `--password` given, or a new generated one
(printed), so the logins shown always work.

Other capabilities extend the demo without editing this file: a component may put an async
hook under `Component.extra["demo"]`; `run_demo` calls `await hook(core, result)` after
`create_demo_event`, and the hook may append to `result.lines` (printed at the end). Hooks must be
idempotent too (e.g. ticketing adds ticket types only if the event has none).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyotp

from config import Settings
from domain import events as event_domain
from domain import schedule as schedule_domain
from domain import speakers as speaker_domain
from domain.crypto import FieldCipher
from domain.event_input import EventCreate, SessionCreate, SpeakerCreate, SpeakerLink, Venue
from domain.identity import Principal
from domain.passwords import Passwords
from domain.services import Core
from storage import events as event_store
from storage import schedule as schedule_store
from storage import users
from storage.db import Database

DEMO_TITLE = "FoyerConf Demo"
DEMO_TIMEZONE = "Europe/Berlin"
ACCOUNTS = {  # key -> (email, name)
    "organizer": ("organizer@foyer-demo.example.org", "Olivia Organizer"),
    "moderator": ("moderator@foyer-demo.example.org", "Max Moderator"),
    "attendee": ("attendee@foyer-demo.example.org", "Ada Attendee"),
}
SPEAKERS = [
    ("Grace Hopper", "Compilers, COBOL and nanoseconds.", "https://en.wikipedia.org/wiki/Grace_Hopper"),
    ("Alan Kay", "Objects, messaging and the Dynabook.", "https://en.wikipedia.org/wiki/Alan_Kay"),
    ("Barbara Liskov", "Abstraction and distributed systems.", "https://en.wikipedia.org/wiki/Barbara_Liskov"),
    ("Edsger Dijkstra", "Shortest paths and structured programming.",
     "https://en.wikipedia.org/wiki/Edsger_W._Dijkstra"),
]
# (day, start hour local, minutes, room, title, speaker indexes, track)
SESSIONS = [
    (0, 9.0, 45, "Main Hall", "Opening keynote: the future of live events", [0], "Keynotes"),
    (0, 10.0, 40, "Main Hall", "Real-time at scale with Socket.IO and Redis", [1], "Engineering"),
    (0, 10.0, 90, "Workshop Room", "Workshop: async Python from zero to hero", [2, 3], "Workshops"),
    (0, 11.0, 40, "Main Hall", "Ticket drops without overselling", [2], "Engineering"),
    (0, 14.0, 40, "Main Hall", "Designing great Q&A and polls", [1], "Product"),
    (0, 14.0, 60, "Workshop Room", "Hands-on: offline-first schedules", [3], "Workshops"),
    (1, 9.5, 40, "Main Hall", "Correctness under concurrency", [3], "Engineering"),
    (1, 11.0, 45, "Main Hall", "Closing keynote", [0, 1], "Keynotes"),
]


@dataclass
class DemoAccount:
    key: str
    email: str
    name: str
    user_id: uuid.UUID
    password: str
    created: bool
    totp_secret: str | None = None

    @property
    def principal(self) -> Principal:
        return Principal(user_id=self.user_id)


@dataclass
class DemoResult:
    """What the demo made; extensions read `event_id`/`accounts` and may append to `lines`."""

    accounts: dict[str, DemoAccount]
    event_id: uuid.UUID
    slug: str
    title: str
    created: bool  # the event was created by this run (False: it already existed)
    session_ids: list[uuid.UUID] = field(default_factory=list)
    speaker_ids: list[uuid.UUID] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


DemoHook = Callable[[Core, DemoResult], Awaitable[None]]


def _password() -> str:
    return secrets.token_urlsafe(12)


async def ensure_account(core: Core, passwords: Passwords, cipher: FieldCipher, key: str, *,
                         password: str | None, two_factor: bool) -> DemoAccount:
    email, name = ACCOUNTS[key]
    chosen = password or _password()
    password_hash = await passwords.hash(chosen)
    async with core.db.transaction("demo_account") as conn:
        user = await users.get_by_email(conn, email)
        created = user is None
        if user is None:
            user = await users.create_user(conn, email=email, name=name, password_hash=password_hash)
        else:
            await users.update_password_hash(conn, user.id, password_hash)
        secret = None
        if two_factor:
            if user.totp_enabled and user.totp_secret_enc is not None:
                secret = cipher.decrypt(user.totp_secret_enc)
            else:
                secret = pyotp.random_base32()
                encrypted = cipher.encrypt(secret)
                await users.set_pending_totp_secret(conn, user.id, encrypted)
                await users.enable_totp(conn, user.id, encrypted)
    return DemoAccount(key=key, email=email, name=name, user_id=user.id, password=chosen, created=created,
                       totp_secret=secret)


def _local(start: datetime, day: int, hour: float) -> datetime:
    tz = ZoneInfo(DEMO_TIMEZONE)
    base = datetime(start.year, start.month, start.day, tzinfo=tz) + timedelta(days=day)
    return (base + timedelta(hours=hour)).astimezone(UTC)


async def create_demo_event(core: Core, *, password: str | None = None) -> DemoResult:
    """Demo accounts plus the published sample conference; safe to run again (reuses both)."""
    auth = core.settings.auth
    passwords = Passwords(time_cost=auth.argon2_time_cost, memory_kib=auth.argon2_memory_kib,
                          parallelism=auth.argon2_parallelism)
    cipher = FieldCipher(str(auth.encryption_keys))
    accounts = {
        "organizer": await ensure_account(core, passwords, cipher, "organizer", password=password, two_factor=True),
        "moderator": await ensure_account(core, passwords, cipher, "moderator", password=password, two_factor=False),
        "attendee": await ensure_account(core, passwords, cipher, "attendee", password=password, two_factor=False),
    }
    organizer = accounts["organizer"].principal
    existing = await event_store.find_owned(core.db.pool, organizer.user_id, DEMO_TITLE)
    if existing is None:
        result = await _create_event(core, organizer, accounts)
    else:
        result = DemoResult(accounts=accounts, event_id=existing.id, slug=existing.slug, title=existing.title,
                            created=False)
        snapshot = await schedule_store.load_schedule(core.db.pool, existing.id)
        if snapshot is not None:
            result.session_ids = [s.id for s in snapshot.sessions]
            result.speaker_ids = [s.id for s in snapshot.speakers]
        if existing.status == "draft":
            await event_domain.publish_event(core, organizer, existing.id)
    await _ensure_people(core, organizer, accounts, result)
    return result


async def _create_event(core: Core, organizer: Principal, accounts: dict[str, DemoAccount]) -> DemoResult:
    start = datetime.now(UTC) + timedelta(days=30)
    event = await event_domain.create_event(core, organizer, EventCreate(
        title=DEMO_TITLE,
        description="A two-day conference about building live-event experiences: real-time rooms, "
                    "ticket drops, schedules that sync offline, and the people behind them.",
        starts_at=_local(start, 0, 8.5), ends_at=_local(start, 1, 18), timezone=DEMO_TIMEZONE,
        venue=Venue(name="Foyer Congress Center", address="Alexanderplatz 1", city="Berlin", country="DE",
                    lat=52.5219, lon=13.4132),
        cover_image_url="https://images.example.org/foyerconf/cover.jpg",
        tags=["demo", "python", "real-time", "events"], live_access="ticket_holders",
    ))
    result = DemoResult(accounts=accounts, event_id=event.id, slug=event.slug, title=event.title, created=True)
    for name, bio, link in SPEAKERS:
        speaker = await speaker_domain.create_speaker(core, organizer, event.id, SpeakerCreate(
            name=name, bio=bio, links=[SpeakerLink(label="Wikipedia", url=link)]))
        result.speaker_ids.append(speaker.id)
    for day, hour, minutes, room, title, speaker_idx, track in SESSIONS:
        starts = _local(start, day, hour)
        session = await schedule_domain.create_session(core, organizer, event.id, SessionCreate(
            title=title, starts_at=starts, ends_at=starts + timedelta(minutes=minutes), room=room, track=track,
            abstract=f"{title}. A demo session.", capacity=300 if room == "Main Hall" else 40,
            speaker_ids=[result.speaker_ids[i] for i in speaker_idx]))
        result.session_ids.append(session.id)
    await event_domain.publish_event(core, organizer, event.id)
    return result


async def _ensure_people(core: Core, organizer: Principal, accounts: dict[str, DemoAccount],
                         result: DemoResult) -> None:
    from domain import agenda, team

    await team.add_member(core, organizer, result.event_id, accounts["moderator"].user_id, "moderator")
    async with core.db.transaction("demo_attendee") as conn:
        # what a ticket grants; ticketing's demo hook adds a real order on top
        await event_store.add_member(conn, event_id=result.event_id, user_id=accounts["attendee"].user_id,
                                     role="attendee")
    for session_id in result.session_ids[:2]:
        await agenda.bookmark(core, accounts["attendee"].principal, session_id)


def demo_hooks() -> list[DemoHook]:
    from server.components import all_components

    return [c.extra["demo"] for c in all_components() if c.extra.get("demo")]


def render(settings: Settings, result: DemoResult) -> str:
    base = settings.base_url
    lines = [f"{'Created' if result.created else 'Found'} the demo event: {result.title}", ""]
    lines.append("Logins (POST /api/auth/login {email, password, totp_code?}):")
    for account in result.accounts.values():
        state = "new" if account.created else "existing, password reset"
        lines.append(f"  {account.key:<10} {account.email:<36} password: {account.password}   ({state})")
        if account.totp_secret:
            totp = pyotp.TOTP(account.totp_secret)
            lines.append(f"  {'':<10} two-factor secret: {account.totp_secret}   (code now: {totp.now()})")
            lines.append(f"  {'':<10} {totp.provisioning_uri(name=account.email, issuer_name='Foyer demo')}")
    lines += [
        "",
        "URLs:",
        f"  event     {base}/api/events/{result.event_id}",
        f"  by slug   {base}/api/events/by-slug/{result.slug}",
        f"  schedule  {base}/api/events/{result.event_id}/schedule",
        f"  search    {base}/api/events?q=foyerconf",
        f"  API docs  {base}/api/openapi.json",
        f"  live      {base}/socket.io/ (namespace /live, auth {{\"token\": <access token>}})",
        f"{len(result.speaker_ids)} speakers, {len(result.session_ids)} sessions in 2 rooms; "
        "run `python run.py` to serve it.",
    ]
    if result.lines:
        lines += ["", *result.lines]
    return "\n".join(lines)


async def run_demo(settings: Settings, *, password: str | None = None,
                   hooks: list[DemoHook] | None = None) -> int:
    from server.app import build_core
    from storage.migrate import migrate
    from storage.redis import connect_redis

    if password is not None and len(password) < settings.auth.password_min_length:
        print(f"foyer: --password must be at least {settings.auth.password_min_length} characters")
        return 2
    dsn = settings.database_url or ""
    await migrate(dsn)
    core = build_core(settings)
    core.db = await Database.connect(dsn, min_size=1, max_size=4, application_name="foyer demo",
                                     statement_timeout_ms=settings.db_statement_timeout_ms,
                                     lock_timeout_ms=settings.db_lock_timeout_ms)
    core.redis = connect_redis(settings.redis_url or "") if settings.redis_url else None  # type: ignore[assignment]
    try:
        result = await create_demo_event(core, password=password)
        for hook in demo_hooks() if hooks is None else hooks:
            await hook(core, result)
    finally:
        if core.redis is not None:
            await core.redis.aclose()
        await core.db.close()
    print(render(settings, result), flush=True)
    return 0


__all__: list[Any] = ["DemoAccount", "DemoResult", "create_demo_event", "render", "run_demo"]
