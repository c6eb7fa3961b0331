"""Events and their members (team roles and attendees) in PostgreSQL.

Guarantees:
- Slugs are unique (UNIQUE index); `insert_event` finds a free one without aborting the caller's
  transaction (INSERT ... ON CONFLICT (slug) DO NOTHING, then a numbered/random suffix).
- Listing queries are keyset-paginated on `(starts_at, id)` — a total, stable order — and use
  the partial index `events_published_start` (plus the GIN indexes for text and tags).
- `add_member` / `remove_member` are idempotent single statements, safe inside any caller's
  transaction (ticketing grants `attendee` from its own order transaction).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

MEMBER_ROLES = ("organizer", "moderator", "staff", "attendee")

_EVENT_COLUMNS = (
    "id, owner_id, slug, title, description, starts_at, ends_at, timezone, venue, cover_image_url, tags, "
    "status, live_access, schedule_version, published_at, cancelled_at, cancel_reason, created_at, updated_at"
)
# Columns an update may set (anything else is a programming error, never client input).
_UPDATABLE = frozenset(
    {"title", "description", "starts_at", "ends_at", "timezone", "venue", "cover_image_url", "tags", "live_access"}
)


class EventRow(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    owner_id: uuid.UUID
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

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> EventRow:
        return cls(**{k: r[k] for k in cls.__struct_fields__})


class MemberRow(msgspec.Struct, frozen=True, kw_only=True):
    user_id: uuid.UUID
    name: str
    email: str
    role: str
    added_by: uuid.UUID | None
    created_at: datetime


class MyEventRow(msgspec.Struct, frozen=True, kw_only=True):
    event: EventRow
    roles: list[str]


async def insert_event(
    conn: asyncpg.Connection, *, owner_id: uuid.UUID, slug: str, title: str, description: str,
    starts_at: datetime, ends_at: datetime, timezone: str, venue: dict[str, Any] | None,
    cover_image_url: str | None, tags: list[str], live_access: str,
) -> EventRow:
    """Insert a draft; the slug gets `-2`, `-3`, ... (then a random suffix) when taken."""
    candidates = [slug] + [f"{slug}-{n}" for n in range(2, 6)]
    candidates += [f"{slug}-{secrets.token_hex(3)}" for _ in range(5)]
    for candidate in candidates:
        row = await conn.fetchrow(
            f"""INSERT INTO events (owner_id, slug, title, description, starts_at, ends_at, timezone, venue,
                                    cover_image_url, tags, live_access)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                ON CONFLICT (slug) DO NOTHING
                RETURNING {_EVENT_COLUMNS}""",
            owner_id, candidate, title, description, starts_at, ends_at, timezone, venue, cover_image_url,
            tags, live_access,
        )
        if row is not None:
            return EventRow.from_record(row)
    raise RuntimeError(f"could not find a free slug for {slug!r}")


async def get_event(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID, *,
                    for_update: bool = False) -> EventRow | None:
    lock = " FOR NO KEY UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = $1{lock}", event_id)
    return EventRow.from_record(row) if row else None


async def get_event_by_slug(conn: asyncpg.Connection | asyncpg.Pool, slug: str) -> EventRow | None:
    row = await conn.fetchrow(f"SELECT {_EVENT_COLUMNS} FROM events WHERE slug = $1", slug)
    return EventRow.from_record(row) if row else None


async def find_owned(conn: asyncpg.Connection | asyncpg.Pool, owner_id: uuid.UUID, title: str) -> EventRow | None:
    """The oldest event of `owner_id` with exactly this title (used by the idempotent demo)."""
    row = await conn.fetchrow(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE owner_id = $1 AND title = $2 ORDER BY created_at, id LIMIT 1",
        owner_id, title,
    )
    return EventRow.from_record(row) if row else None


async def update_event(conn: asyncpg.Connection, event_id: uuid.UUID, changes: dict[str, Any]) -> EventRow:
    """Set the given columns (names from a fixed allow-list) and `updated_at`; returns the row."""
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    names = sorted(changes)
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    row = await conn.fetchrow(
        f"UPDATE events SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {_EVENT_COLUMNS}",
        event_id, *(changes[n] for n in names),
    )
    return EventRow.from_record(row)


async def set_published(conn: asyncpg.Connection, event_id: uuid.UUID) -> EventRow | None:
    """draft -> published; None when the event is not a draft (any more)."""
    row = await conn.fetchrow(
        f"""UPDATE events SET status = 'published', published_at = now(), updated_at = now()
             WHERE id = $1 AND status = 'draft' RETURNING {_EVENT_COLUMNS}""",
        event_id,
    )
    return EventRow.from_record(row) if row else None


async def set_cancelled(conn: asyncpg.Connection, event_id: uuid.UUID, reason: str) -> EventRow | None:
    """published -> cancelled; None when the event is not published."""
    row = await conn.fetchrow(
        f"""UPDATE events SET status = 'cancelled', cancelled_at = now(), cancel_reason = $2, updated_at = now()
             WHERE id = $1 AND status = 'published' RETURNING {_EVENT_COLUMNS}""",
        event_id, reason,
    )
    return EventRow.from_record(row) if row else None


async def delete_draft(conn: asyncpg.Connection, event_id: uuid.UUID) -> bool:
    """Delete a draft and everything hanging off it (cascade); False when it is not a draft."""
    status = await conn.execute("DELETE FROM events WHERE id = $1 AND status = 'draft'", event_id)
    return status == "DELETE 1"


# --- listing ----------------------------------------------------------------------------------------

async def list_published(
    conn: asyncpg.Connection | asyncpg.Pool, *, q: str | None, starts_before: datetime | None,
    ends_after: datetime | None, tag: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int,
) -> list[EventRow]:
    """Published events, ordered by (starts_at, id), keyset-paginated after `after`.

    Filters: `q` full-text (websearch syntax, 'simple' configuration, title weighted over
    description) on the `search` column (GIN); `tag` one exact normalised tag (GIN); the date
    range keeps events overlapping [ends_after, starts_before).

    Plans: the order is served by the partial index `events_published_start`. A lower bound
    (`ends_after`, e.g. "upcoming from now") is NOT a filter on that scan — with many past events
    it would walk them all — but splits the query in two index-friendly halves whose union is
    exactly `ends_at > ends_after`: events starting at/after it (a range scan of
    `events_published_start`) and events already running at that instant (the GiST index
    `events_published_period`, containment), each limited, merged, limited again.
    """
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    common = ["status = 'published'"]
    if q:
        common.append(f"search @@ websearch_to_tsquery('simple', {arg(q)})")
    if starts_before is not None:
        common.append(f"starts_at < {arg(starts_before)}")
    if tag:
        common.append(f"tags @> ARRAY[{arg(tag)}]::text[]")
    if after is not None:
        common.append(f"(starts_at, id) > ({arg(after[0])}, {arg(after[1])})")
    lim = arg(limit)
    if ends_after is None:
        sql = (f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(common)} "
               f"ORDER BY starts_at, id LIMIT {lim}")
    else:
        at = arg(ends_after)
        where = " AND ".join(common)
        sql = f"""SELECT {_EVENT_COLUMNS} FROM (
                    (SELECT {_EVENT_COLUMNS} FROM events
                      WHERE {where} AND starts_at >= {at}::timestamptz
                      ORDER BY starts_at, id LIMIT {lim})
                    UNION ALL
                    (SELECT {_EVENT_COLUMNS} FROM events
                      WHERE {where} AND tstzrange(starts_at, ends_at) @> {at}::timestamptz
                        AND starts_at < {at}::timestamptz
                      ORDER BY starts_at, id LIMIT {lim})
                  ) AS both_halves
                  ORDER BY starts_at, id LIMIT {lim}"""
    return [EventRow.from_record(r) for r in await conn.fetch(sql, *args)]


async def list_for_member(
    conn: asyncpg.Connection | asyncpg.Pool, *, user_id: uuid.UUID, roles: tuple[str, ...],
    after: tuple[datetime, uuid.UUID] | None, limit: int,
) -> list[MyEventRow]:
    """Events (any status) where `user_id` holds one of `roles`, with all their roles there."""
    cols = ", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))
    rows = await conn.fetch(
        f"""SELECT {cols}, array_agg(m.role ORDER BY m.role) AS my_roles
              FROM event_members m JOIN events e ON e.id = m.event_id
             WHERE m.user_id = $1 AND m.role = ANY($2::text[])
               AND ($3::timestamptz IS NULL OR (e.starts_at, e.id) > ($3, $4::uuid))
             GROUP BY e.id
             ORDER BY e.starts_at, e.id
             LIMIT $5""",
        user_id, list(roles), after[0] if after else None, after[1] if after else None, limit,
    )
    return [MyEventRow(event=EventRow.from_record(r), roles=list(r["my_roles"])) for r in rows]


# --- members ------------------------------------------------------------------------------------------

async def add_member(
    conn: asyncpg.Connection | asyncpg.Pool, *, event_id: uuid.UUID, user_id: uuid.UUID, role: str,
    added_by: uuid.UUID | None = None,
) -> bool:
    """Grant `role` on the event to the user; True if newly granted, False if already held.

    Public for other capabilities (ticketing grants `attendee` from its order transaction).
    Raises ValueError for an unknown role and asyncpg's ForeignKeyViolationError for an unknown
    event or user.
    """
    if role not in MEMBER_ROLES:
        raise ValueError(f"unknown event role {role!r}")
    status = await conn.execute(
        """INSERT INTO event_members (event_id, user_id, role, added_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (event_id, user_id, role) DO NOTHING""",
        event_id, user_id, role, added_by,
    )
    return status == "INSERT 0 1"


async def remove_member(
    conn: asyncpg.Connection | asyncpg.Pool, *, event_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> bool:
    """Revoke `role`; True if it was held. (The owner's organizer role is protected by the domain.)"""
    status = await conn.execute(
        "DELETE FROM event_members WHERE event_id = $1 AND user_id = $2 AND role = $3", event_id, user_id, role
    )
    return status == "DELETE 1"


async def get_member(
    conn: asyncpg.Connection | asyncpg.Pool, *, event_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> MemberRow | None:
    row = await conn.fetchrow(
        """SELECT m.user_id, u.name, u.email, m.role, m.added_by, m.created_at
             FROM event_members m JOIN users u ON u.id = m.user_id
            WHERE m.event_id = $1 AND m.user_id = $2 AND m.role = $3""",
        event_id, user_id, role,
    )
    return MemberRow(**dict(row)) if row else None


async def list_team(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID) -> list[MemberRow]:
    """Organizers, moderators and staff (not attendees), ordered by role then name."""
    rows = await conn.fetch(
        """SELECT m.user_id, u.name, u.email, m.role, m.added_by, m.created_at
             FROM event_members m JOIN users u ON u.id = m.user_id
            WHERE m.event_id = $1 AND m.role <> 'attendee'
            ORDER BY array_position(ARRAY['organizer', 'moderator', 'staff'], m.role), lower(u.name), m.user_id""",
        event_id,
    )
    return [MemberRow(**dict(r)) for r in rows]


async def active_user_exists(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND disabled_at IS NULL)", user_id
    ))
