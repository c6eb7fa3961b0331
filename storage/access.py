"""The one query behind authorization: an event's visibility facts plus the caller's roles on it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def load_event_access(
    conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID, user_id: uuid.UUID | None
) -> dict[str, Any] | None:
    """Return {status, owner_id, live_access, published_at, schedule_version, roles, totp_enabled},
    or None if there is no such event. One primary-key lookup plus two index probes."""
    row = await conn.fetchrow(
        """SELECT e.status, e.owner_id, e.live_access, e.published_at, e.schedule_version,
                  coalesce(array(SELECT m.role FROM event_members m
                                  WHERE m.event_id = e.id AND m.user_id = $2), '{}') AS roles,
                  coalesce((SELECT u.totp_enabled FROM users u WHERE u.id = $2), false) AS totp_enabled
             FROM events e WHERE e.id = $1""",
        event_id, user_id,
    )
    return dict(row) if row else None
