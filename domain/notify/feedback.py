"""Session and event feedback: attendees rate 1–5 with an optional comment, once each, changeable.

Rules:
- Only attendees (ticket holders) of a published event may rate (policy `SEND_FEEDBACK`); others
  get `forbidden`/`not_found` as the policy decides.
- Session feedback opens when the session starts (`feedback_not_open` before, with `opens_at`);
  cancelled sessions take none (`invalid_state`). Event feedback opens when the event starts.
- A second submission changes the first (one row per user per session / per event).
- Organizers (policy `VIEW_ANALYTICS`, which requires 2FA) see averages and distributions per
  session, per speaker and for the event, and the comments; comments are shown to no one else,
  and without the author's identity.
- Every submission appends `feedback.submitted` `{feedback_id, event_id, session_id, rating,
  previous_rating, has_comment, speaker_ids}` (no comment text, no user id) in its transaction.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from domain.errors import FoyerError, field_error, not_found
from domain.identity import Principal
from domain.policy import Action, authorize
from domain.services import Core
from storage import feedback as store
from storage import notify as notify_store
from storage import outbox


def _row(r: Any) -> dict[str, Any]:
    return {"id": r["id"], "event_id": r["event_id"], "session_id": r["session_id"], "rating": r["rating"],
            "comment": r["comment"], "created_at": r["created_at"], "updated_at": r["updated_at"]}


def _clean(comment: str | None) -> str | None:
    if comment is None:
        return None
    comment = comment.strip()
    return comment or None


class Feedback:
    def __init__(self, core: Core) -> None:
        self.core = core

    @property
    def _2fa(self) -> bool:
        return self.core.settings.auth.require_2fa_for_staff

    async def submit(self, principal: Principal, *, rating: int, comment: str | None,
                     session_id: uuid.UUID | None = None, event_id: uuid.UUID | None = None) -> dict[str, Any]:
        now = datetime.now(UTC)
        async with self.core.db.transaction("submit_feedback") as conn:
            if session_id is not None:
                s = await notify_store.session_with_event(conn, session_id)
                if s is None:
                    raise not_found("session")
                event_id = s["event_id"]
                await authorize(conn, principal, Action.SEND_FEEDBACK, event_id, require_2fa=self._2fa)
                if s["status"] == "cancelled":
                    raise FoyerError("invalid_state", "this session was cancelled")
                opens_at = s["starts_at"]
            else:
                assert event_id is not None
                await authorize(conn, principal, Action.SEND_FEEDBACK, event_id, require_2fa=self._2fa)
                e = await notify_store.event_row(conn, event_id)
                opens_at = e["starts_at"]
            if now < opens_at:
                raise FoyerError("feedback_not_open", "feedback opens when it starts",
                                 details={"opens_at": opens_at.isoformat()})
            row, previous = await store.upsert(conn, event_id=event_id, session_id=session_id,
                                               user_id=principal.user_id, rating=rating, comment=_clean(comment))
            speakers = await store.session_speaker_ids(conn, session_id) if session_id else []
            await outbox.append(conn, type="feedback.submitted", event_id=event_id, data={
                "feedback_id": str(row["id"]), "event_id": str(event_id),
                "session_id": str(session_id) if session_id else None, "rating": rating,
                "previous_rating": previous, "has_comment": row["comment"] is not None,
                "speaker_ids": [str(s) for s in speakers]})
        return {**_row(row), "changed": previous is not None}

    async def mine(self, principal: Principal, *, session_id: uuid.UUID | None = None,
                   event_id: uuid.UUID | None = None) -> dict[str, Any]:
        async with self.core.db.connection() as conn:
            if session_id is not None:
                s = await notify_store.session_with_event(conn, session_id)
                if s is None:
                    raise not_found("session")
                event_id = s["event_id"]
            assert event_id is not None
            await authorize(conn, principal, Action.VIEW_EVENT, event_id, require_2fa=self._2fa)
            row = await store.mine(conn, user_id=principal.user_id, event_id=event_id, session_id=session_id)
        if row is None:
            raise not_found("feedback")
        return _row(row)

    async def results(self, principal: Principal, event_id: uuid.UUID) -> dict[str, Any]:
        async with self.core.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_ANALYTICS, event_id, require_2fa=self._2fa)
            event = await store.event_summary(conn, event_id)
            sessions = await store.session_summaries(conn, event_id)
            speakers = await store.speaker_summaries(conn, event_id)
        return {
            "event": {"count": event["count"], "average": event["average"],
                      "distribution": list(event["distribution"]), "comments": event["comments"]},
            "sessions": [{"session_id": s["session_id"], "title": s["title"], "starts_at": s["starts_at"],
                          "status": s["status"], "count": s["count"], "average": s["average"],
                          "distribution": list(s["distribution"]), "comments": s["comments"]} for s in sessions],
            "speakers": [{"speaker_id": s["speaker_id"], "name": s["name"], "sessions": s["sessions"],
                          "count": s["count"], "average": s["average"]} for s in speakers],
        }

    async def comments(self, principal: Principal, event_id: uuid.UUID, *, session_id: uuid.UUID | None,
                       event_level: bool, cursor: str | None, limit: int) -> dict[str, Any]:
        before = _decode_cursor(cursor) if cursor else None
        async with self.core.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_ANALYTICS, event_id, require_2fa=self._2fa)
            rows = await store.comments(conn, event_id=event_id, session_id=session_id, event_level=event_level,
                                        before=before, limit=limit + 1)
        items = [{"id": r["id"], "session_id": r["session_id"], "session_title": r["session_title"],
                  "rating": r["rating"], "comment": r["comment"], "updated_at": r["updated_at"]}
                 for r in rows[:limit]]
        next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return {"comments": items, "next_cursor": next_cursor}


def _encode_cursor(r: Any) -> str:
    raw = f"{r['updated_at'].isoformat()}|{r['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, ident = raw.split("|")
        return datetime.fromisoformat(at), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise field_error("cursor", "not a cursor from a previous page") from None
