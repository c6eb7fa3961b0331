"""Views of questions (what attendees, moderators and authors see) and the Q&A join snapshot."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from rooms.names import RoomName
from storage import qa as store
from storage.qa import Question

# ------------------------------------------------------------------------------------------------
# views
# ------------------------------------------------------------------------------------------------

def ms(t: datetime | None) -> int | None:
    return int(t.timestamp() * 1000) if t is not None else None


def public_view(q: Question) -> dict[str, Any]:
    """What attendees see: never the author of an anonymous question."""
    view: dict[str, Any] = {
        "id": str(q.id), "text": q.text,
        "author": None if q.anonymous else {"id": str(q.user_id), "name": q.author_name},
        "anonymous": q.anonymous, "upvotes": q.upvotes, "answered": q.answered_at is not None,
        "pinned": q.pinned, "ts": ms(q.created_at),
    }
    if q.edited_at is not None:
        view["edited_at"] = ms(q.edited_at)
    return view


def staff_view(q: Question) -> dict[str, Any]:
    """What moderators see: the author always, the status, the session."""
    view = public_view(q)
    view["author"] = {"id": str(q.user_id), "name": q.author_name}
    view["status"] = q.status
    view["session_id"] = str(q.session_id)
    view["in_room"] = f"session:{q.session_id}"
    return view


def own_view(q: Question) -> dict[str, Any]:
    view = staff_view(q)
    view.pop("in_room")
    return view


# ------------------------------------------------------------------------------------------------
# join snapshots
# ------------------------------------------------------------------------------------------------

def make_snapshot(limit: int):
    async def snapshot(tx: Any, rn: RoomName, seq: int) -> dict[str, Any] | None:
        """`session:` rooms: settings, dismissed count, pinned id, the `limit` most upvoted and
        `limit` newest visible questions (ordered by votes, then newest), total visible.
        `staff:` rooms: the event's pending questions (oldest first, staff view)."""
        if rn.kind == "session":
            qs = await store.get_session(tx, rn.id)
            top = await store.list_visible(tx, rn.id, order="votes", limit=limit)
            recent = await store.list_visible(tx, rn.id, order="recent", limit=limit)
            seen: dict[uuid.UUID, Question] = {q.id: q for q in top}
            for q in recent:
                seen.setdefault(q.id, q)
            questions = sorted(seen.values(), key=lambda q: (-q.upvotes, -q.created_at.timestamp()))
            return {"premoderation": qs.premoderation, "dismissed_count": qs.dismissed_count,
                    "pinned": str(p) if (p := await store.pinned_id(tx, rn.id)) else None,
                    "total": await store.count_visible(tx, rn.id),
                    "questions": [public_view(q) for q in questions]}
        if rn.kind == "staff":
            pending = await store.pending_for_event(tx, rn.id, limit=limit * 2)
            return {"pending": [staff_view(q) for q in pending]}
        return None

    return snapshot


async def audit_trail(core: Any, principal: Any, event_id: uuid.UUID, *, session_id: uuid.UUID | None,
                      before: int | None, limit: int) -> dict[str, Any]:
    """The Q&A moderation audit trail of an event, newest first (organizers: `qa.audit`)."""
    from domain.policy import Action, authorize

    async with core.db.transaction("qa.audit", readonly=True) as tx:
        await authorize(tx, principal, Action.VIEW_QA_AUDIT, event_id)
        rows = await store.audit_trail(tx, event_id, session_id=session_id, before=before, limit=limit)
    entries = [{
        "id": r["id"], "session_id": r["session_id"], "question_id": r["question_id"], "action": r["action"],
        "actor": {"id": r["actor_id"], "name": r["actor_name"]} if r["actor_id"] else None,
        "detail": r["detail"], "question_text": r["question_text"], "created_at": r["created_at"],
    } for r in rows]
    return {"entries": entries, "next_before": rows[-1]["id"] if len(rows) == limit else None}
