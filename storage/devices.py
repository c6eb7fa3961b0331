"""Push devices (FCM registration tokens) per user.

Guarantees:
- A token is registered to at most one user (UNIQUE): registering it again moves it to the
  caller, so a phone handed to someone else stops receiving the previous owner's pushes.
- A user keeps at most `limit` devices: registering one more evicts the least recently seen.
- `delete_by_tokens` is what invalid-token cleanup calls after FCM says a token is dead.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class Device:
    id: uuid.UUID
    user_id: uuid.UUID
    platform: str
    token: str
    created_at: datetime
    last_seen_at: datetime

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Device:
        return cls(id=r["id"], user_id=r["user_id"], platform=r["platform"], token=r["token"],
                   created_at=r["created_at"], last_seen_at=r["last_seen_at"])

    def public(self) -> dict:
        """What the owner sees: the token is a credential, so only its tail is shown."""
        return {"id": self.id, "platform": self.platform, "token_suffix": self.token[-8:],
                "created_at": self.created_at, "last_seen_at": self.last_seen_at}


_COLS = "id, user_id, platform, token, created_at, last_seen_at"


async def register(conn: asyncpg.Connection, *, user_id: uuid.UUID, platform: str, token: str,
                   limit: int) -> tuple[Device, bool]:
    """Upsert by token (moving it to `user_id`); returns (device, created). Runs in a transaction."""
    row = await conn.fetchrow(
        f"""INSERT INTO devices (user_id, platform, token) VALUES ($1, $2, $3)
            ON CONFLICT (token) DO UPDATE
               SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform, last_seen_at = now(),
                   created_at = CASE WHEN devices.user_id = EXCLUDED.user_id THEN devices.created_at
                                     ELSE now() END
            RETURNING {_COLS}, (xmax = 0) AS inserted""",
        user_id, platform, token,
    )
    # Evict beyond the per-user limit, least recently seen first (never the one just registered).
    await conn.execute(
        """DELETE FROM devices WHERE id IN (
               SELECT id FROM devices WHERE user_id = $1 AND id <> $2
                ORDER BY last_seen_at DESC, created_at DESC OFFSET $3)""",
        user_id, row["id"], max(limit - 1, 0),
    )
    return Device.from_record(row), bool(row["inserted"])


async def list_for_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> list[Device]:
    rows = await conn.fetch(f"SELECT {_COLS} FROM devices WHERE user_id = $1 ORDER BY created_at", user_id)
    return [Device.from_record(r) for r in rows]


async def list_for_users(conn: asyncpg.Connection | asyncpg.Pool, user_ids: Sequence[uuid.UUID]) -> list[Device]:
    rows = await conn.fetch(f"SELECT {_COLS} FROM devices WHERE user_id = ANY($1::uuid[])", list(user_ids))
    return [Device.from_record(r) for r in rows]


async def delete(conn: asyncpg.Connection | asyncpg.Pool, *, user_id: uuid.UUID, device_id: uuid.UUID) -> bool:
    status = await conn.execute("DELETE FROM devices WHERE id = $1 AND user_id = $2", device_id, user_id)
    return status == "DELETE 1"


async def delete_by_ids(conn: asyncpg.Connection | asyncpg.Pool, device_ids: Sequence[uuid.UUID]) -> int:
    """Invalid-token cleanup. Pending push messages of those devices go with them (cascade)."""
    if not device_ids:
        return 0
    status = await conn.execute("DELETE FROM devices WHERE id = ANY($1::uuid[])", list(device_ids))
    return int(status.split()[-1])
