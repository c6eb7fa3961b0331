"""Push devices (FCM registration tokens) per user, and the push queue.

Guarantees:
- A token is registered to at most one user (UNIQUE): registering it again moves it to the
  caller, so a phone handed to someone else stops receiving the previous owner's pushes.
- A user keeps at most `limit` devices: registering one more evicts the least recently seen.
- `delete_by_ids` is what invalid-token cleanup calls after FCM says a token is dead.
- Push queue: `enqueue_push` inserts one row per (notification, device) and ignores duplicates,
  so an outbox event delivered twice never pushes twice. `claim_push` hands each due row to one
  worker at a time (FOR UPDATE SKIP LOCKED + a lease); a worker that dies loses its lease and the
  row becomes due again (at-least-once towards FCM, bounded by the lease).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


# --- push queue ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushRow:
    user_id: uuid.UUID
    device_id: uuid.UUID
    not_before: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClaimedPush:
    id: int
    user_id: uuid.UUID
    device_id: uuid.UUID
    token: str
    platform: str
    kind: str
    payload: dict[str, Any]
    attempts: int  # including this one


async def enqueue_push(conn: asyncpg.Connection, *, dedupe_key: str, kind: str, payload: dict[str, Any],
                       rows: Sequence[PushRow]) -> int:
    """Insert queue rows (duplicates ignored); returns how many were new."""
    if not rows:
        return 0
    status = await conn.execute(
        """INSERT INTO push_messages (dedupe_key, user_id, device_id, kind, payload, not_before, expires_at)
           SELECT $1, u, d, $2, $3, coalesce(nb, now()), ex
             FROM unnest($4::uuid[], $5::uuid[], $6::timestamptz[], $7::timestamptz[]) AS t(u, d, nb, ex)
           ON CONFLICT (dedupe_key, device_id) DO NOTHING""",
        dedupe_key, kind, payload,
        [r.user_id for r in rows], [r.device_id for r in rows], [r.not_before for r in rows],
        [r.expires_at for r in rows],
    )
    return int(status.split()[-1])


async def claim_push(conn: asyncpg.Connection | asyncpg.Pool, *, limit: int, lease_seconds: float) -> list[ClaimedPush]:
    """Claim up to `limit` due messages for this worker (one statement, so it commits at once)."""
    rows = await conn.fetch(
        """WITH due AS (
               SELECT id FROM push_messages
                WHERE state = 'pending' AND not_before <= now()
                  AND (claimed_until IS NULL OR claimed_until < now())
                ORDER BY not_before LIMIT $1
                FOR UPDATE SKIP LOCKED)
           UPDATE push_messages p
              SET claimed_until = now() + make_interval(secs => $2), attempts = p.attempts + 1
             FROM due, devices d
            WHERE p.id = due.id AND d.id = p.device_id
        RETURNING p.id, p.user_id, p.device_id, d.token, d.platform, p.kind, p.payload, p.attempts, p.expires_at""",
        limit, lease_seconds,
    )
    claimed: list[ClaimedPush] = []
    expired: list[int] = []
    for r in rows:
        if r["expires_at"] is not None and r["expires_at"] <= datetime.now(r["expires_at"].tzinfo):
            expired.append(r["id"])
            continue
        claimed.append(ClaimedPush(id=r["id"], user_id=r["user_id"], device_id=r["device_id"], token=r["token"],
                                   platform=r["platform"], kind=r["kind"], payload=r["payload"],
                                   attempts=r["attempts"]))
    if expired:
        await finish_push(conn, expired, state="expired", error="expired before it could be sent")
    return claimed


async def finish_push(conn: asyncpg.Connection | asyncpg.Pool, ids: Sequence[int], *, state: str,
                      error: str | None = None) -> None:
    if ids:
        await conn.execute(
            """UPDATE push_messages SET state = $2, last_error = $3, finished_at = now(), claimed_until = NULL
                WHERE id = ANY($1::bigint[])""",
            list(ids), state, error,
        )


async def retry_push(conn: asyncpg.Connection | asyncpg.Pool, items: Sequence[tuple[int, float, str]]) -> None:
    """Release claims with a delay: items are (id, delay seconds, error)."""
    if items:
        await conn.execute(
            """UPDATE push_messages p
                  SET not_before = now() + make_interval(secs => t.delay), claimed_until = NULL,
                      last_error = t.err
                 FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS t(id, delay, err)
                WHERE p.id = t.id""",
            [i[0] for i in items], [i[1] for i in items], [i[2] for i in items],
        )


async def next_push_due(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    return await conn.fetchval(
        "SELECT min(greatest(not_before, coalesce(claimed_until, not_before))) FROM push_messages WHERE state = 'pending'"
    )


async def push_messages_for(conn: asyncpg.Connection | asyncpg.Pool, dedupe_prefix: str) -> list[asyncpg.Record]:
    """Queue rows whose dedupe key starts with `dedupe_prefix` (diagnostics and tests)."""
    return await conn.fetch(
        "SELECT * FROM push_messages WHERE dedupe_key LIKE $1 || '%' ORDER BY id", dedupe_prefix
    )


async def purge_finished_push(conn: asyncpg.Connection | asyncpg.Pool, *, older_than_days: int) -> int:
    status = await conn.execute(
        "DELETE FROM push_messages WHERE state <> 'pending' AND finished_at < now() - make_interval(days => $1)",
        older_than_days,
    )
    return int(status.split()[-1])
