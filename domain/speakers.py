"""Speakers of an event: create, read, update, delete (organizers and admins edit; viewers read).

Each write is a schedule change (version bump + change row + `schedule.changed`) in the same
transaction. Deleting a speaker also records an `updated` change for every session it was
assigned to (their `speaker_ids` shrink), so a client applying the delta stays consistent.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from domain import event_input as rules
from domain.changes import Change, record_changes
from domain.errors import not_found
from domain.event_input import Problems, SpeakerCreate, SpeakerPatch
from domain.identity import Principal
from domain.policy import Action, authorize
from domain.schedule import authorize_edit, editable_guard, require_2fa
from domain.services import Core
from storage import schedule as schedule_store
from storage import speakers as store
from storage.speakers import SpeakerRow

SpeakerOut = SpeakerRow


class SpeakerList(msgspec.Struct, kw_only=True):
    items: list[SpeakerRow]


async def create_speaker(core: Core, principal: Principal, event_id: uuid.UUID, body: SpeakerCreate) -> SpeakerRow:
    p = Problems()
    name = rules.clean_line(body.name, "name", p, required=True)
    bio = rules.clean_text(body.bio, "bio", p)
    photo = rules.check_https_url(body.photo_url, "photo_url", p) if body.photo_url else None
    links = rules.links_list(body.links, p)
    p.raise_if_any()
    async with core.db.transaction("speaker_create") as conn:
        await authorize_edit(core, conn, principal, event_id)
        speaker = await store.insert_speaker(conn, event_id=event_id, name=name, bio=bio, photo_url=photo, links=links)
        await record_changes(conn, event_id=event_id, actor_id=principal.user_id,
                             changes=[Change("speaker", speaker.id, "created", speaker)], guard=editable_guard())
    return speaker


def _speaker_changes(speaker: SpeakerRow, patch: SpeakerPatch) -> dict[str, Any]:
    p = Problems()
    wanted: dict[str, Any] = {}
    if patch.name is not msgspec.UNSET:
        wanted["name"] = rules.clean_line(patch.name, "name", p, required=True)
    if patch.bio is not msgspec.UNSET:
        wanted["bio"] = rules.clean_text(patch.bio, "bio", p)
    if patch.photo_url is not msgspec.UNSET:
        wanted["photo_url"] = rules.check_https_url(patch.photo_url, "photo_url", p) if patch.photo_url else None
    if patch.links is not msgspec.UNSET:
        wanted["links"] = rules.links_list(patch.links, p)
    p.raise_if_any()
    return {k: v for k, v in wanted.items() if getattr(speaker, k) != v}


async def _load_for_edit(core: Core, conn: Any, principal: Principal, speaker_id: uuid.UUID) -> SpeakerRow:
    found = await store.get_speaker(conn, speaker_id)
    if found is None:
        raise not_found("speaker")
    await authorize_edit(core, conn, principal, found.event_id, "speaker")
    speaker = await store.get_speaker(conn, speaker_id, for_update=True)
    if speaker is None:
        raise not_found("speaker")
    return speaker


async def update_speaker(core: Core, principal: Principal, speaker_id: uuid.UUID, patch: SpeakerPatch) -> SpeakerRow:
    async with core.db.transaction("speaker_update") as conn:
        speaker = await _load_for_edit(core, conn, principal, speaker_id)
        changes = _speaker_changes(speaker, patch)
        if not changes:
            return speaker
        updated = await store.update_speaker(conn, speaker_id, changes)
        await record_changes(conn, event_id=speaker.event_id, actor_id=principal.user_id,
                             changes=[Change("speaker", speaker_id, "updated", updated, tuple(sorted(changes)))],
                             guard=editable_guard())
    return updated


async def delete_speaker(core: Core, principal: Principal, speaker_id: uuid.UUID) -> None:
    async with core.db.transaction("speaker_delete") as conn:
        speaker = await _load_for_edit(core, conn, principal, speaker_id)
        session_ids = await store.delete_speaker(conn, speaker_id)
        for session_id in session_ids:
            await schedule_store.touch_session(conn, session_id)
        sessions = await schedule_store.get_sessions(conn, session_ids) if session_ids else []
        changes = [Change("speaker", speaker_id, "deleted")]
        changes += [Change("session", s.id, "updated", s, ("speaker_ids",)) for s in sessions]
        await record_changes(conn, event_id=speaker.event_id, actor_id=principal.user_id, changes=changes,
                             guard=editable_guard())


async def get_speaker(core: Core, principal: Principal | None, speaker_id: uuid.UUID) -> SpeakerRow:
    async with core.db.connection() as conn:
        speaker = await store.get_speaker(conn, speaker_id)
        if speaker is None:
            raise not_found("speaker")
        await authorize(conn, principal, Action.VIEW_EVENT, speaker.event_id, require_2fa=require_2fa(core),
                        subject="speaker")
    return speaker


async def list_speakers(core: Core, principal: Principal | None, event_id: uuid.UUID) -> SpeakerList:
    async with core.db.connection() as conn:
        await authorize(conn, principal, Action.VIEW_EVENT, event_id, require_2fa=require_2fa(core))
        return SpeakerList(items=await store.list_speakers(conn, event_id))
