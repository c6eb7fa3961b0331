"""Calendar documents for events, schedules and personal agenda feeds; "add to calendar" links.

UIDs are stable per entity (`event-<id>@foyer`, `session-<id>@foyer`), so a re-imported or
refreshed document updates entries instead of duplicating them, and the same UIDs appear in the
order-confirmation attachment. SEQUENCE increases whenever a significant field changed since the
last render (storage.notify.calendar_sequences). Agenda feed URLs carry a random secret (only its
hash is stored); rotating it revokes the old URL at once.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from domain.crypto import sha256
from domain.errors import not_found
from domain.identity import Principal
from domain.notify.content import venue_text
from domain.policy import Action, authorize
from domain.services import Core
from integrations.calendar import CalItem, build_calendar, google_link, outlook_link
from storage import account_tokens as tokens_store
from storage import notify as store


def event_uid(event_id: uuid.UUID) -> str:
    return f"event-{event_id}@foyer"


def session_uid(session_id: uuid.UUID) -> str:
    return f"session-{session_id}@foyer"


class Calendars:
    def __init__(self, core: Core) -> None:
        self.core = core

    @property
    def base_url(self) -> str:
        return self.core.settings.base_url.rstrip("/")

    def event_item(self, e: Any) -> CalItem:
        return CalItem(
            uid=event_uid(e["id"]), title=e["title"], starts_at=e["starts_at"], ends_at=e["ends_at"],
            timezone=e["timezone"], description=e["description"] or "", location=venue_text(e["venue"]),
            url=f"{self.base_url}/e/{e['slug']}", cancelled=e["status"] == "cancelled",
            last_modified=e["updated_at"], categories=tuple(e["tags"] or ()),
        )

    def session_item(self, s: Any) -> CalItem:
        where = ", ".join(p for p in (s["room"], venue_text(s["venue"])) if p)
        description = s["abstract"] or ""
        if s["speakers"]:
            description = (f"Speakers: {', '.join(s['speakers'])}\n\n" + description).strip()
        return CalItem(
            uid=session_uid(s["id"]), title=f"{s['title']} · {s['event_title']}", starts_at=s["starts_at"],
            ends_at=s["ends_at"], timezone=s["timezone"], description=description, location=where,
            url=f"{self.base_url}/e/{s['event_slug']}",
            cancelled=s["status"] == "cancelled" or s["event_status"] == "cancelled",
            last_modified=s["updated_at"], categories=tuple(c for c in (s["track"],) if c),
        )

    async def with_sequences(self, items: Sequence[CalItem]) -> list[CalItem]:
        seq = await store.calendar_sequences(self.core.db.pool, [(i.uid, i.fingerprint()) for i in items])
        return [replace(i, sequence=seq.get(i.uid, 0)) for i in items]

    async def _visible_event(self, principal: Principal | None, event_id: uuid.UUID) -> Any:
        async with self.core.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_EVENT, event_id,
                            require_2fa=self.core.settings.auth.require_2fa_for_staff)
            row = await store.event_row(conn, event_id)
        if row is None:
            raise not_found("event")
        return row

    # --- documents --------------------------------------------------------------------------

    async def event_ics(self, principal: Principal | None, event_id: uuid.UUID) -> tuple[bytes, str]:
        e = await self._visible_event(principal, event_id)
        items = await self.with_sequences([self.event_item(e)])
        return build_calendar(items, name=e["title"]), e["slug"]

    async def schedule_ics(self, principal: Principal | None, event_id: uuid.UUID) -> tuple[bytes, str]:
        e = await self._visible_event(principal, event_id)
        sessions = await store.event_sessions(self.core.db.pool, event_id)
        items = await self.with_sequences([self.session_item(s) for s in sessions])
        body = build_calendar(items, name=f"{e['title']} — schedule", description=e["description"] or "",
                              refresh_minutes=self.core.settings.notify.calendar_refresh_minutes)
        return body, e["slug"]

    async def feed_ics(self, token: str) -> bytes:
        user_id = await tokens_store.feed_user(self.core.db.pool, sha256(token))
        if user_id is None:
            raise not_found("calendar feed")
        sessions = await store.agenda_sessions(self.core.db.pool, user_id)
        items = await self.with_sequences([self.session_item(s) for s in sessions])
        return build_calendar(items, name="My Foyer agenda", description="Sessions you bookmarked.",
                              refresh_minutes=self.core.settings.notify.calendar_refresh_minutes)

    # --- feed management --------------------------------------------------------------------

    def feed_urls(self, token: str) -> dict[str, str]:
        url = f"{self.base_url}/cal/{token}.ics"
        webcal = "webcal://" + url.split("://", 1)[1]
        return {"url": url, "webcal_url": webcal}

    async def rotate_feed(self, user_id: uuid.UUID) -> dict[str, Any]:
        token = secrets.token_urlsafe(24)
        created = await tokens_store.set_feed_token(self.core.db.pool, user_id=user_id, token_hash=sha256(token))
        return {**self.feed_urls(token), "active": True, "created_at": created}

    async def feed_status(self, user_id: uuid.UUID) -> dict[str, Any]:
        row = await tokens_store.feed_info(self.core.db.pool, user_id)
        if row is None:
            return {"active": False}
        return {"active": True, "created_at": row["created_at"], "last_fetched_at": row["last_fetched_at"]}

    async def revoke_feed(self, user_id: uuid.UUID) -> None:
        await tokens_store.delete_feed(self.core.db.pool, user_id)

    # --- links ------------------------------------------------------------------------------

    def links(self, item: CalItem, ics_url: str) -> dict[str, str]:
        return {"ics": ics_url, "google": google_link(item), "outlook": outlook_link(item),
                "office365": outlook_link(item, office365=True)}

    async def event_links(self, principal: Principal | None, event_id: uuid.UUID) -> dict[str, str]:
        e = await self._visible_event(principal, event_id)
        return self.links(self.event_item(e), f"{self.base_url}/api/events/{event_id}/calendar.ics")

    async def session_links(self, principal: Principal | None, session_id: uuid.UUID) -> dict[str, str]:
        s = await store.session_with_event(self.core.db.pool, session_id)
        if s is None:
            raise not_found("session")
        await self._visible_event(principal, s["event_id"])
        full = next((r for r in await store.event_sessions(self.core.db.pool, s["event_id"]) if r["id"] == session_id),
                    None)
        if full is None:
            raise not_found("session")
        return self.links(self.session_item(full),
                          f"{self.base_url}/api/events/{s['event_id']}/schedule.ics")
