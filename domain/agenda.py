"""Personal agendas: signed-in users bookmark sessions of events they may view.

Bookmarking needs `BOOKMARK_SESSION` on the session's event (any signed-in user who may view
it); sessions of invisible events answer `not_found` exactly like missing ones. The agenda only
ever lists sessions of events the user may still view (each row goes through the policy).
Bookmarks survive a session's cancellation (it shows as cancelled) and vanish with its deletion.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from domain.errors import FoyerError, not_found
from domain.identity import Principal
from domain.policy import Action, authorize, filter_visible
from domain.services import Core
from storage import schedule as store
from storage.schedule import SessionRow


class AgendaEvent(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    title: str
    timezone: str
    status: str


class AgendaItem(msgspec.Struct, kw_only=True):
    session: SessionRow
    event: AgendaEvent
    added_at: datetime


class AgendaOut(msgspec.Struct, kw_only=True):
    items: list[AgendaItem]


class AgendaQuery(msgspec.Struct, forbid_unknown_fields=True):
    event_id: uuid.UUID | None = None


class BookmarkOut(msgspec.Struct, kw_only=True):
    session_id: uuid.UUID
    added_at: datetime
    added: bool


def _require_2fa(core: Core) -> bool:
    return core.settings.auth.require_2fa_for_staff


async def _session_for(core: Core, conn: Any, principal: Principal, session_id: uuid.UUID) -> SessionRow:
    session = await store.get_session(conn, session_id)
    if session is None:
        raise not_found("session")
    await authorize(conn, principal, Action.BOOKMARK_SESSION, session.event_id, require_2fa=_require_2fa(core),
                    subject="session")
    return session


async def bookmark(core: Core, principal: Principal, session_id: uuid.UUID) -> BookmarkOut:
    async with core.db.connection() as conn:
        session = await _session_for(core, conn, principal, session_id)
        if session.status != "scheduled":
            raise FoyerError("invalid_state", "the session is cancelled")
        added, added_at = await store.add_agenda_item(conn, principal.user_id, session_id)
    return BookmarkOut(session_id=session_id, added_at=added_at, added=added)


async def unbookmark(core: Core, principal: Principal, session_id: uuid.UUID) -> None:
    """Idempotent: removing a bookmark that is not there succeeds too."""
    async with core.db.connection() as conn:
        await _session_for(core, conn, principal, session_id)
        await store.remove_agenda_item(conn, principal.user_id, session_id)


async def agenda(core: Core, principal: Principal, event_id: uuid.UUID | None = None) -> AgendaOut:
    async with core.db.connection() as conn:
        rows = await store.list_agenda(conn, principal.user_id, event_id)
    visible = filter_visible(rows, principal, roles_of=lambda r: r.roles, require_2fa=_require_2fa(core))
    return AgendaOut(items=[
        AgendaItem(session=r.session, event=msgspec.convert(r.event, AgendaEvent), added_at=r.added_at)
        for r, _ in visible
    ])
