"""Events: create, read, update, publish, cancel, delete, list and search.

Every function authorizes through `domain.policy` first (inside the transaction it writes in),
validates meaning with field-level details (`domain.event_input`), writes, records schedule
changes (`domain.changes`) and outbox facts in the SAME transaction, and returns API views.

Outbox facts (payloads documented in docs/schedule.md):
- `event.published` `{event_id, slug, title, starts_at, ends_at, timezone, owner_id}`
- `event.updated`   `{event_id, fields, event}` (public view after the change)
- `event.cancelled` `{event_id, slug, title, starts_at, reason, cancelled_at}`
- `schedule.changed` for title/time/time zone/venue/status changes (see domain/changes.py)

State rules: only drafts are deleted (a published event is cancelled instead); only drafts are
published; only published events are cancelled; a cancelled event is read-only.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from domain import event_input as rules
from domain.changes import SCHEDULE_EVENT_FIELDS, Change, ScheduleEvent, record_changes
from domain.errors import FoyerError, field_error
from domain.event_input import EventCreate, EventPatch, Problems
from domain.identity import Principal
from domain.policy import Action, EventAccess, authorize, authorize_global, filter_visible
from domain.services import Core
from storage import events as event_store
from storage import outbox
from storage import schedule as schedule_store
from storage.events import EventRow
from storage.schedule import iso

PAGE_DEFAULT = 20
PAGE_MAX = 100


class EventOut(msgspec.Struct, kw_only=True):
    """An event as the API shows it. `owner_id` only to the event's team; `my_roles` to members."""

    id: uuid.UUID
    slug: str
    title: str
    description: str
    starts_at: datetime
    ends_at: datetime
    timezone: str
    venue: dict[str, Any] | None
    cover_image_url: str | None
    tags: list[str]
    status: str
    live_access: str
    schedule_version: int
    published_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str
    created_at: datetime
    updated_at: datetime
    owner_id: uuid.UUID | UnsetType = UNSET
    my_roles: list[str] | UnsetType = UNSET


class EventPage(msgspec.Struct, kw_only=True):
    items: list[EventOut]
    next_cursor: str | None


class EventListQuery(msgspec.Struct, forbid_unknown_fields=True):
    q: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    # "from"/"to" are Python keywords: renamed on the wire
    from_: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(default=None, name="from")
    to: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    tag: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT


class MyEventsQuery(msgspec.Struct, forbid_unknown_fields=True):
    role: rules.MemberRole | None = None
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT


class CancelBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=1000)] = ""


def event_out(row: EventRow, access: EventAccess | None = None, roles: list[str] | None = None) -> EventOut:
    out = EventOut(**{f: getattr(row, f) for f in EventOut.__struct_fields__ if f not in ("owner_id", "my_roles")})
    if access is not None and access.can(Action.VIEW_TEAM):
        out.owner_id = row.owner_id
    member_roles = roles if roles is not None else (sorted(access.roles) if access is not None else None)
    if member_roles is not None and (access is None or access.user_id is not None):
        out.my_roles = member_roles
    return out


def _require_2fa(core: Core) -> bool:
    return core.settings.auth.require_2fa_for_staff


async def _authorize(core: Core, conn: Any, principal: Principal | None, action: Action,
                     event_id: uuid.UUID) -> EventAccess:
    return await authorize(conn, principal, action, event_id, require_2fa=_require_2fa(core))


# --- create / read ------------------------------------------------------------------------------------

async def create_event(core: Core, principal: Principal | None, body: EventCreate) -> EventOut:
    """Create a draft; the creator becomes its owner and an organizer."""
    principal = authorize_global(principal, Action.CREATE_EVENT)
    p = Problems()
    title = rules.clean_line(body.title, "title", p, required=True)
    description = rules.clean_text(body.description, "description", p)
    starts_at, ends_at = rules.utc(body.starts_at), rules.utc(body.ends_at)
    rules.check_range(starts_at, ends_at, p, max_days=rules.EVENT_DURATION_MAX_DAYS)
    timezone = rules.check_timezone(body.timezone, "timezone", p)
    venue = rules.venue_dict(body.venue, p)
    cover = rules.check_https_url(body.cover_image_url, "cover_image_url", p) if body.cover_image_url else None
    tags = rules.normalize_tags(body.tags, "tags", p)
    p.raise_if_any()
    async with core.db.transaction("event_create") as conn:
        row = await event_store.insert_event(
            conn, owner_id=principal.user_id, slug=rules.slugify(title), title=title, description=description,
            starts_at=starts_at, ends_at=ends_at, timezone=timezone, venue=venue, cover_image_url=cover, tags=tags,
            live_access=body.live_access,
        )
        await event_store.add_member(conn, event_id=row.id, user_id=principal.user_id, role="organizer",
                                     added_by=principal.user_id)
        access = await _authorize(core, conn, principal, Action.VIEW_EVENT, row.id)
    return event_out(row, access)


async def get_event(core: Core, principal: Principal | None, event_id: uuid.UUID) -> EventOut:
    async with core.db.connection() as conn:
        access = await _authorize(core, conn, principal, Action.VIEW_EVENT, event_id)
        row = await event_store.get_event(conn, event_id)
    if row is None:
        raise FoyerError("not_found", "event not found")
    return event_out(row, access)


async def get_event_by_slug(core: Core, principal: Principal | None, slug: str) -> EventOut:
    async with core.db.connection() as conn:
        row = await event_store.get_event_by_slug(conn, slug)
        if row is None:
            raise FoyerError("not_found", "event not found")
        access = await _authorize(core, conn, principal, Action.VIEW_EVENT, row.id)
    return event_out(row, access)


# --- update --------------------------------------------------------------------------------------------

def _patch_changes(row: EventRow, patch: EventPatch) -> dict[str, Any]:
    """Validated column values that differ from the row."""
    p = Problems()
    wanted: dict[str, Any] = {}
    if patch.title is not UNSET:
        wanted["title"] = rules.clean_line(patch.title, "title", p, required=True)
    if patch.description is not UNSET:
        wanted["description"] = rules.clean_text(patch.description, "description", p)
    if patch.starts_at is not UNSET:
        wanted["starts_at"] = rules.utc(patch.starts_at)
    if patch.ends_at is not UNSET:
        wanted["ends_at"] = rules.utc(patch.ends_at)
    if "starts_at" in wanted or "ends_at" in wanted:
        rules.check_range(wanted.get("starts_at", row.starts_at), wanted.get("ends_at", row.ends_at), p,
                          max_days=rules.EVENT_DURATION_MAX_DAYS)
    if patch.timezone is not UNSET:
        wanted["timezone"] = rules.check_timezone(patch.timezone, "timezone", p)
    if patch.venue is not UNSET:
        wanted["venue"] = rules.venue_dict(patch.venue, p)
    if patch.cover_image_url is not UNSET:
        wanted["cover_image_url"] = (rules.check_https_url(patch.cover_image_url, "cover_image_url", p)
                                     if patch.cover_image_url else None)
    if patch.tags is not UNSET:
        wanted["tags"] = rules.normalize_tags(patch.tags, "tags", p)
    if patch.live_access is not UNSET:
        wanted["live_access"] = patch.live_access
    p.raise_if_any()
    return {k: v for k, v in wanted.items() if getattr(row, k) != v}


async def update_event(core: Core, principal: Principal, event_id: uuid.UUID, patch: EventPatch) -> EventOut:
    """Change an event's fields. Moving its times must keep every scheduled session inside
    (`schedule_conflict` naming the sessions otherwise). Title/time/time zone/venue changes are
    schedule changes (new version)."""
    async with core.db.transaction("event_update") as conn:
        access = await _authorize(core, conn, principal, Action.UPDATE_EVENT, event_id)
        row = await event_store.get_event(conn, event_id, for_update=True)
        if row is None:
            raise FoyerError("not_found", "event not found")
        if row.status == "cancelled":
            raise FoyerError("invalid_state", "the event is cancelled and can no longer be changed")
        changes = _patch_changes(row, patch)
        if not changes:
            return event_out(row, access)
        if "starts_at" in changes or "ends_at" in changes:
            outside = await schedule_store.sessions_outside(
                conn, event_id, changes.get("starts_at", row.starts_at), changes.get("ends_at", row.ends_at))
            if outside:
                raise FoyerError(
                    "schedule_conflict",
                    f"{len(outside)} session(s) would fall outside the event's new times; move them first",
                    details={"sessions_outside": [
                        {"session_id": str(s.id), "title": s.title, "starts_at": iso(s.starts_at),
                         "ends_at": iso(s.ends_at)} for s in outside]},
                )
        updated = await event_store.update_event(conn, event_id, changes)
        fields = sorted(changes)
        schedule_fields = tuple(f for f in fields if f in SCHEDULE_EVENT_FIELDS)
        if schedule_fields:
            state = await record_changes(
                conn, event_id=event_id, actor_id=principal.user_id,
                changes=[Change("event", event_id, "updated", ScheduleEvent.of(updated), schedule_fields)],
            )
            updated = msgspec.structs.replace(updated, schedule_version=state.version)
        view = event_out(updated, access)
        public = event_out(updated)
        await outbox.append(conn, type="event.updated", event_id=event_id,
                            data={"event_id": str(event_id), "fields": fields, "event": msgspec.to_builtins(public)})
    return view


# --- lifecycle ------------------------------------------------------------------------------------------

async def publish_event(core: Core, principal: Principal, event_id: uuid.UUID) -> EventOut:
    """draft -> published (organizers/admins with 2FA enabled)."""
    async with core.db.transaction("event_publish") as conn:
        access = await _authorize(core, conn, principal, Action.PUBLISH_EVENT, event_id)
        row = await event_store.set_published(conn, event_id)
        if row is None:
            raise FoyerError("invalid_state", f"only drafts can be published; this event is {access.status}")
        state = await record_changes(conn, event_id=event_id, actor_id=principal.user_id,
                                     changes=[Change("event", event_id, "updated", ScheduleEvent.of(row), ("status",))])
        row = msgspec.structs.replace(row, schedule_version=state.version)
        await outbox.append(conn, type="event.published", event_id=event_id, data={
            "event_id": str(event_id), "slug": row.slug, "title": row.title,
            "starts_at": iso(row.starts_at), "ends_at": iso(row.ends_at), "timezone": row.timezone,
            "owner_id": str(row.owner_id),
        })
    return event_out(row, access)


async def cancel_event(core: Core, principal: Principal, event_id: uuid.UUID, reason: str) -> EventOut:
    """published -> cancelled (the owner or an admin). Tickets are refunded by ticketing (it
    consumes `event.cancelled`). The event stays visible, read-only, with its reason."""
    p = Problems()
    reason = rules.clean_text(reason, "reason", p)
    p.raise_if_any()
    async with core.db.transaction("event_cancel") as conn:
        access = await _authorize(core, conn, principal, Action.CANCEL_EVENT, event_id)
        row = await event_store.set_cancelled(conn, event_id, reason)
        if row is None:
            hint = "; delete a draft instead" if access.status == "draft" else ""
            raise FoyerError("invalid_state", f"only published events can be cancelled; this event is "
                             f"{access.status}{hint}")
        state = await record_changes(conn, event_id=event_id, actor_id=principal.user_id,
                                     changes=[Change("event", event_id, "updated", ScheduleEvent.of(row), ("status",))])
        row = msgspec.structs.replace(row, schedule_version=state.version)
        await outbox.append(conn, type="event.cancelled", event_id=event_id, data={
            "event_id": str(event_id), "slug": row.slug, "title": row.title,
            "starts_at": iso(row.starts_at), "reason": reason,
            "cancelled_at": iso(row.cancelled_at) if row.cancelled_at else None,
        })
    return event_out(row, access)


async def delete_event(core: Core, principal: Principal, event_id: uuid.UUID) -> None:
    """Delete a draft (the owner or an admin); published events are cancelled instead."""
    async with core.db.transaction("event_delete") as conn:
        access = await _authorize(core, conn, principal, Action.DELETE_EVENT, event_id)
        if not await event_store.delete_draft(conn, event_id):
            raise FoyerError("invalid_state", f"only drafts can be deleted; this event is {access.status} "
                             "(cancel it with POST /api/events/{id}/cancel)")


# --- listing ----------------------------------------------------------------------------------------------

def encode_cursor(row: EventRow) -> str:
    raw = orjson.dumps(["v1", iso(row.starts_at), str(row.id)])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, starts, ident = orjson.loads(raw)
        if tag != "v1":
            raise ValueError(tag)
        when = datetime.fromisoformat(starts)
        if when.tzinfo is None:
            raise ValueError(starts)
        return when, uuid.UUID(ident)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise field_error("cursor", "not a cursor returned by this API") from None


async def list_events(core: Core, principal: Principal | None, query: EventListQuery) -> EventPage:
    """Published events, ordered by (starts_at, id); filters combine with AND.

    `from`/`to` keep events overlapping [from, to); `q` is full-text (websearch syntax: words,
    "phrases", -exclusions); `tag` matches one normalised tag. Pages continue with `cursor`
    (opaque; the order is total, so no row is skipped or repeated between pages).
    """
    p = Problems()
    if query.from_ is not None and query.to is not None and query.to <= query.from_:
        p.add("to", "must be after from")
    tag = rules.normalize_tag(query.tag, "tag", p) if query.tag is not None else None
    q = rules.clean_line(query.q, "q", p) if query.q else None
    after = decode_cursor(query.cursor) if query.cursor else None
    p.raise_if_any()
    async with core.db.connection() as conn:
        rows = await event_store.list_published(
            conn, q=q or None, starts_before=query.to, ends_after=query.from_, tag=tag, after=after,
            limit=query.limit + 1,
        )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    visible = filter_visible(rows, principal, require_2fa=_require_2fa(core))
    return EventPage(items=[event_out(r) for r, _ in visible],
                     next_cursor=encode_cursor(rows[-1]) if more and rows else None)


async def my_events(core: Core, principal: Principal, query: MyEventsQuery) -> EventPage:
    """Events where the caller holds a team role (or `role=` one role), any status."""
    roles = (query.role,) if query.role else ("organizer", "moderator", "staff")
    after = decode_cursor(query.cursor) if query.cursor else None
    async with core.db.connection() as conn:
        rows = await event_store.list_for_member(conn, user_id=principal.user_id, roles=roles, after=after,
                                                 limit=query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    by_id = {r.event.id: r for r in rows}
    visible = filter_visible([r.event for r in rows], principal, roles_of=lambda e: by_id[e.id].roles,
                             require_2fa=_require_2fa(core))
    items = [event_out(event, access, roles=by_id[event.id].roles) for event, access in visible]
    return EventPage(items=items, next_cursor=encode_cursor(rows[-1].event) if more and rows else None)
