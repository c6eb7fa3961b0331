"""Speakers of an event, and their assignment to sessions, in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

_COLUMNS = "id, event_id, name, bio, photo_url, links, created_at, updated_at"
_UPDATABLE = frozenset({"name", "bio", "photo_url", "links"})


class SpeakerRow(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    event_id: uuid.UUID
    name: str
    bio: str
    photo_url: str | None
    links: list[dict[str, str]]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> SpeakerRow:
        return cls(**{k: r[k] for k in cls.__struct_fields__})


async def insert_speaker(
    conn: asyncpg.Connection, *, event_id: uuid.UUID, name: str, bio: str, photo_url: str | None,
    links: list[dict[str, str]],
) -> SpeakerRow:
    row = await conn.fetchrow(
        f"""INSERT INTO speakers (event_id, name, bio, photo_url, links) VALUES ($1, $2, $3, $4, $5)
            RETURNING {_COLUMNS}""",
        event_id, name, bio, photo_url, links,
    )
    return SpeakerRow.from_record(row)


async def get_speaker(conn: asyncpg.Connection | asyncpg.Pool, speaker_id: uuid.UUID, *,
                      for_update: bool = False) -> SpeakerRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM speakers WHERE id = $1{lock}", speaker_id)
    return SpeakerRow.from_record(row) if row else None


async def list_speakers(conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID) -> list[SpeakerRow]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM speakers WHERE event_id = $1 ORDER BY lower(name), id", event_id
    )
    return [SpeakerRow.from_record(r) for r in rows]


async def update_speaker(conn: asyncpg.Connection, speaker_id: uuid.UUID, changes: dict[str, Any]) -> SpeakerRow:
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    names = sorted(changes)
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    row = await conn.fetchrow(
        f"UPDATE speakers SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
        speaker_id, *(changes[n] for n in names),
    )
    return SpeakerRow.from_record(row)


async def delete_speaker(conn: asyncpg.Connection, speaker_id: uuid.UUID) -> list[uuid.UUID]:
    """Delete the speaker; return the ids of the sessions it was assigned to (now unassigned)."""
    rows = await conn.fetch(
        """WITH gone AS (DELETE FROM session_speakers WHERE speaker_id = $1 RETURNING session_id),
                s AS (DELETE FROM speakers WHERE id = $1)
           SELECT session_id FROM gone ORDER BY session_id""",
        speaker_id,
    )
    return [r["session_id"] for r in rows]


async def foreign_speakers(
    conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID, speaker_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """The ids in `speaker_ids` that are not speakers of `event_id` (unknown or another event's)."""
    if not speaker_ids:
        return []
    found = await conn.fetch(
        "SELECT id FROM speakers WHERE event_id = $1 AND id = ANY($2::uuid[])", event_id, speaker_ids
    )
    known = {r["id"] for r in found}
    return [s for s in speaker_ids if s not in known]


async def set_session_speakers(conn: asyncpg.Connection, session_id: uuid.UUID,
                               speaker_ids: list[uuid.UUID]) -> None:
    """Replace the session's speakers by `speaker_ids`, in that order."""
    await conn.execute("DELETE FROM session_speakers WHERE session_id = $1", session_id)
    if speaker_ids:
        await conn.execute(
            """INSERT INTO session_speakers (session_id, speaker_id, position)
               SELECT $1, s, p::int - 1 FROM unnest($2::uuid[]) WITH ORDINALITY AS t(s, p)""",
            session_id, speaker_ids,
        )


async def add_session_speaker(conn: asyncpg.Connection, session_id: uuid.UUID, speaker_id: uuid.UUID) -> bool:
    """Append the speaker to the session's list; False if already assigned."""
    status = await conn.execute(
        """INSERT INTO session_speakers (session_id, speaker_id, position)
           SELECT $1, $2, coalesce(max(position) + 1, 0) FROM session_speakers WHERE session_id = $1
           ON CONFLICT (session_id, speaker_id) DO NOTHING""",
        session_id, speaker_id,
    )
    return status == "INSERT 0 1"


async def remove_session_speaker(conn: asyncpg.Connection, session_id: uuid.UUID, speaker_id: uuid.UUID) -> bool:
    status = await conn.execute(
        "DELETE FROM session_speakers WHERE session_id = $1 AND speaker_id = $2", session_id, speaker_id
    )
    return status == "DELETE 1"
