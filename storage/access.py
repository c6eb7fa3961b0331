"""The one query behind authorization: an event's visibility facts plus the caller's roles on it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def load_event_access(
    conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID, user_id: uuid.UUID | None
) -> dict[str, Any] | None:
    """Return {status, owner_id, live_access, published_at, schedule_version, roles, totp_enabled,
    user_role}, or None if there is no such event. One primary-key lookup plus two index probes.

    `user_active` is false when the caller's account was disabled or deleted after their token
    was issued. `user_role` is the caller's global role as PostgreSQL has it now (not as their access token
    claimed it when issued), so revoking an admin takes effect on the next request."""
    row = await conn.fetchrow(
        """SELECT e.status, e.owner_id, e.live_access, e.published_at, e.schedule_version,
                  coalesce(array(SELECT m.role FROM event_members m
                                  WHERE m.event_id = e.id AND m.user_id = $2), '{}') AS roles,
                  coalesce(u.totp_enabled, false) AS totp_enabled,
                  u.role AS user_role,
                  (u.id IS NOT NULL) AS user_active
             FROM events e
             LEFT JOIN users u ON u.id = $2 AND u.disabled_at IS NULL
            WHERE e.id = $1""",
        event_id, user_id,
    )
    return dict(row) if row else None
