"""Q&A in session rooms: ask, upvote, edit; moderators approve, dismiss, answer, pin.

Rooms: questions live in `session:{id}`; moderators see every question of the event live in
`staff:{event_id}` (pending ones, and the author of anonymous ones). Every state change is a
durable room event (per-room seq, replayable), staged in the transaction that makes it true
and acked only after commit; upvote counts reach the room coalesced (`qa:votes`, at most
`qa_votes_max_hz` per session across all nodes).

Rules (each violation is an error ack with a stable code):
- only members of the session room may ask, upvote, edit, list (`not_member`); muted or
  banned users may not ask (`muted`/`banned`); Q&A lives in session rooms only (`validation_failed`);
- question text is 1..`qa_question_max_length` characters without banned words
  (`validation_failed`, `message_rejected`); asks are rate-limited (`qa_ask_rate_limit` per
  `qa_ask_rate_window_seconds`), upvotes by `live_action_rate_limit` (`rate_limited`);
- `anonymous` hides the author from attendees (their copy says `author: null`), never from
  moderators (the staff copy always names them);
- one upvote per user per question (PostgreSQL primary key): double submits count once;
- authors edit their own question until it is approved or answered (`invalid_state` after);
- moderation (`qa.moderate`: event moderators and organizers, checked in PostgreSQL at the time
  of the action, `forbidden` otherwise) from the question's session room or the staff room;
  every action is in the audit trail (`qa_audit`: who, what, when);
- with pre-moderation on, questions wait in the staff room until approved or dismissed;
  attendees see the count of dismissed questions;
- one pinned question per session (a partial unique index; pins serialised per session).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from domain.errors import FoyerError, field_error, not_found
from domain.policy import Action
from rooms.broadcast import RoomEvent, deliver, stage
from rooms.chat import clean_text, member_of
from rooms.engage import Engagement, authorize_action
from rooms.local import Conn, Member
from rooms.names import RoomName, parse_room
from rooms.protocol import decode, event_handler, ok, uid
from rooms.qa_views import make_snapshot, ms, own_view, public_view, staff_view
from storage import chat as chat_store
from storage import outbox
from storage import qa as store
from storage.qa import Question
from storage.rooms import session_event_id

if TYPE_CHECKING:
    from rooms.service import Live


class _In(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class AskIn(_In):
    room: str
    text: str
    client_id: str
    anonymous: bool = False


class EditIn(_In):
    room: str
    id: str
    text: str


class UpvoteIn(_In):
    room: str
    id: str
    on: bool = True


class RoomOnlyIn(_In):
    room: str


class ListIn(_In):
    room: str
    order: str = "votes"
    offset: int = 0
    limit: int = 50


class ModIn(_In):
    room: str
    id: str


class DismissIn(_In):
    room: str
    id: str
    reason: str = ""


class AnswerIn(_In):
    room: str
    id: str
    answered: bool = True


class PinIn(_In):
    room: str
    id: str
    on: bool = True


class SettingsIn(_In):
    room: str
    premoderation: bool
    session_id: str | None = None


# ------------------------------------------------------------------------------------------------
# bindings
# ------------------------------------------------------------------------------------------------

def bind(live: Live, eng: Engagement) -> None:
    core = live.core
    sio = live.sio
    settings = core.settings.live
    live.add_snapshot("qa", make_snapshot(settings.qa_snapshot_size))

    async def send_votes(key: str) -> None:
        """Coalesced `qa:votes {votes: {question id: count}}` for one session."""
        session_id = uuid.UUID(key)
        async with core.db.transaction("qa.votes") as tx:
            votes = await store.take_unsent_votes(tx, session_id)
            ev = await stage(tx, room=f"session:{session_id}", event="qa:votes", data={"votes": votes}) \
                if votes else None
        if ev is not None:
            await deliver(core, ev)

    eng.coalescer.register("qa", hz=settings.qa_votes_max_hz, send=send_votes)

    def session_member(sid: str, room: str) -> tuple[Member, RoomName]:
        rn = parse_room(room)
        if rn.kind != "session":
            raise field_error("room", "Q&A lives in session rooms (session:<id>)")
        return member_of(live.conn(sid), rn.name), rn

    async def question_in(tx: Any, member: Member, rn: RoomName, qid: uuid.UUID, *,
                          for_update: bool = False) -> Question:
        """The question, if it belongs to this room (its session room, or its event's staff room)."""
        q = await store.get_question(tx, qid, for_update=for_update)
        if q is None or rn.name not in (f"session:{q.session_id}", f"staff:{q.event_id}"):
            raise not_found("question")
        return q

    async def moderation(sid: str, room: str, qid_text: str, name: str, fn: Any) -> Any:
        """Common frame of moderator actions: membership, policy (now, from PostgreSQL), the
        session lock (serialises a session's moderation), the question locked, audit, events."""
        rn = parse_room(room)
        if rn.kind not in ("session", "staff"):
            raise field_error("room", "use the question's session room or the event's staff room")
        member = member_of(live.conn(sid), rn.name)
        qid = uid(qid_text, "id")
        async with core.db.transaction(f"qa.{name}") as tx:
            q = await question_in(tx, member, rn, qid)
            await authorize_action(tx, member.conn, Action.MODERATE_QA, q.event_id)
            qs = await store.lock_session(tx, q.session_id, q.event_id)
            q = await store.get_question(tx, qid, for_update=True)
            assert q is not None
            result, events = await fn(tx, member.conn, q, qs)
        await deliver(core, *events)
        return result

    async def staff_status(tx: Any, q: Question, action: str, by: uuid.UUID, **extra: Any) -> RoomEvent:
        fresh = await store.get_question(tx, q.id)
        assert fresh is not None
        return await stage(tx, room=f"staff:{q.event_id}", event="qa:status", actor_id=by,
                           data={"question": staff_view(fresh), "action": action, "by": str(by), **extra})

    # --- attendees ------------------------------------------------------------------------------

    @sio.on("qa:ask", namespace="/live")
    @event_handler
    async def qa_ask(sid: str, data: Any) -> Any:
        req = decode(AskIn, data)
        member, rn = session_member(sid, req.room)
        conn, room = member.conn, member.room
        if not 1 <= len(req.client_id) <= 64:
            raise field_error("client_id", "must be 1 to 64 characters")
        text = clean_text(req.text, max_length=settings.qa_question_max_length, banned=eng.banned)
        assert room.event_id is not None
        qid, now = uuid.uuid4(), datetime.now(UTC)
        try:
            async with core.db.transaction("qa.ask") as tx:
                dup = await store.find_by_client_id(tx, rn.id, conn.user_id, req.client_id)
                if dup is not None:
                    return ok(id=str(dup[0]), status=dup[1], duplicate=True)
                sanction = await chat_store.active_sanction(tx, room.name, conn.user_id)
                if sanction is not None:
                    kind, until = sanction
                    raise FoyerError("banned" if kind == "ban" else "muted",
                                     "you are banned from this room" if kind == "ban" else "you are muted in this room",
                                     details={"until": until.isoformat() if until else None})
                await eng.rate(member, conn.user_id, "qa_ask", limit=settings.qa_ask_rate_limit,
                               window=settings.qa_ask_rate_window_seconds)
                qs = await store.get_session(tx, rn.id)
                status = "pending" if qs.premoderation and not member.can_moderate else "visible"
                await store.insert_question(tx, id=qid, session_id=rn.id, event_id=room.event_id,
                                            user_id=conn.user_id, client_id=req.client_id, text=text,
                                            anonymous=req.anonymous, status=status, created_at=now)
                q = await store.get_question(tx, qid)
                assert q is not None
                await outbox.append(tx, type="question.asked", event_id=room.event_id, data={
                    "question_id": str(qid), "session_id": str(rn.id), "user_id": str(conn.user_id),
                    "anonymous": req.anonymous, "status": status, "length": len(text)})
                events = []
                if status == "visible":
                    events.append(await stage(tx, room=room.name, event="qa:question", data=public_view(q),
                                              actor_id=None if req.anonymous else conn.user_id))
                events.append(await stage(tx, room=f"staff:{room.event_id}", event="qa:question",
                                          data=staff_view(q), actor_id=conn.user_id))
        except asyncpg.UniqueViolationError:
            dup = await store.find_by_client_id(core.db, rn.id, conn.user_id, req.client_id)
            if dup is None:
                raise
            return ok(id=str(dup[0]), status=dup[1], duplicate=True)
        await deliver(core, *events)
        return ok(id=str(qid), status=status, seq=events[0].seq if status == "visible" else None)

    @sio.on("qa:edit", namespace="/live")
    @event_handler
    async def qa_edit(sid: str, data: Any) -> Any:
        req = decode(EditIn, data)
        member, rn = session_member(sid, req.room)
        qid = uid(req.id, "id")
        text = clean_text(req.text, max_length=settings.qa_question_max_length, banned=eng.banned)
        await eng.rate(member, member.conn.user_id, "act", limit=settings.live_action_rate_limit,
                       window=settings.live_chat_rate_window_seconds)
        async with core.db.transaction("qa.edit") as tx:
            q = await question_in(tx, member, rn, qid, for_update=True)
            if q.user_id != member.conn.user_id:
                raise FoyerError("forbidden", "you can only edit your own questions")
            if q.status == "dismissed" or q.approved_at is not None or q.answered_at is not None:
                raise FoyerError("invalid_state", "this question can no longer be edited")
            edited_at = await store.edit_question(tx, qid, text)
            body = {"id": str(qid), "text": text, "edited_at": ms(edited_at)}
            events = []
            if q.status == "visible":
                events.append(await stage(tx, room=rn.name, event="qa:edited", data=body,
                                          actor_id=None if q.anonymous else q.user_id))
            events.append(await stage(tx, room=f"staff:{q.event_id}", event="qa:edited",
                                      data={**body, "session_id": str(q.session_id)}, actor_id=q.user_id))
        await deliver(core, *events)
        return ok(id=str(qid), edited_at=ms(edited_at))

    @sio.on("qa:upvote", namespace="/live")
    @event_handler
    async def qa_upvote(sid: str, data: Any) -> Any:
        req = decode(UpvoteIn, data)
        member, rn = session_member(sid, req.room)
        qid = uid(req.id, "id")
        await eng.rate(member, member.conn.user_id, "qa_vote", limit=settings.live_action_rate_limit,
                       window=settings.live_chat_rate_window_seconds)
        async with core.db.transaction("qa.upvote") as tx:
            q = await question_in(tx, member, rn, qid)
            if q.status != "visible":
                raise not_found("question")
            changed, count = await store.set_upvote(tx, qid, member.conn.user_id, req.on)
            if changed:
                await outbox.append(tx, type="question.upvoted", event_id=q.event_id, data={
                    "question_id": str(qid), "session_id": str(q.session_id),
                    "user_id": str(member.conn.user_id), "on": req.on, "upvotes": count})
        if changed:
            await eng.coalescer.mark("qa", str(q.session_id))
        return ok(id=str(qid), on=req.on, changed=changed, upvotes=count)

    @sio.on("qa:list", namespace="/live")
    @event_handler
    async def qa_list(sid: str, data: Any) -> Any:
        req = decode(ListIn, data)
        _member, rn = session_member(sid, req.room)
        if req.order not in ("votes", "recent"):
            raise field_error("order", "must be votes or recent")
        if not 1 <= req.limit <= 100:
            raise field_error("limit", "must be between 1 and 100")
        if not 0 <= req.offset <= 100_000:
            raise field_error("offset", "must be between 0 and 100000")
        async with core.db.transaction("qa.list", isolation="repeatable_read", readonly=True) as tx:
            rows = await store.list_visible(tx, rn.id, order=req.order, limit=req.limit, offset=req.offset)
            total = await store.count_visible(tx, rn.id)
        return ok(room=rn.name, order=req.order, total=total, questions=[public_view(q) for q in rows])

    @sio.on("qa:mine", namespace="/live")
    @event_handler
    async def qa_mine(sid: str, data: Any) -> Any:
        req = decode(RoomOnlyIn, data)
        member, rn = session_member(sid, req.room)
        rows, upvoted = await store.mine(core.db, rn.id, member.conn.user_id)
        return ok(room=rn.name, questions=[own_view(q) for q in rows], upvoted=upvoted)

    # --- moderators ------------------------------------------------------------------------------

    @sio.on("qa:approve", namespace="/live")
    @event_handler
    async def qa_approve(sid: str, data: Any) -> Any:
        req = decode(ModIn, data)

        async def act(tx: Any, conn: Conn, q: Question, qs: Any) -> tuple[Any, list[RoomEvent]]:
            if q.status == "visible":
                return ok(id=str(q.id), status=q.status, changed=False), []
            if q.status != "pending":
                raise FoyerError("invalid_state", f"the question is {q.status}")
            await store.approve(tx, q.id, conn.user_id)
            await store.audit(tx, event_id=q.event_id, session_id=q.session_id, question_id=q.id,
                              actor_id=conn.user_id, action="approve")
            fresh = await store.get_question(tx, q.id)
            assert fresh is not None
            ev = await stage(tx, room=f"session:{q.session_id}", event="qa:question", data=public_view(fresh),
                             actor_id=None if q.anonymous else q.user_id)
            return ok(id=str(q.id), status="visible", changed=True, seq=ev.seq), \
                [ev, await staff_status(tx, q, "approve", conn.user_id)]

        return await moderation(sid, req.room, req.id, "approve", act)

    @sio.on("qa:dismiss", namespace="/live")
    @event_handler
    async def qa_dismiss(sid: str, data: Any) -> Any:
        req = decode(DismissIn, data)
        reason = req.reason.strip()
        if len(reason) > 500:
            raise field_error("reason", "at most 500 characters")

        async def act(tx: Any, conn: Conn, q: Question, qs: Any) -> tuple[Any, list[RoomEvent]]:
            if q.status == "dismissed":
                return ok(id=str(q.id), status=q.status, changed=False), []
            await store.dismiss(tx, q.id)
            count = await store.count_dismissed(tx, q.session_id)
            await store.audit(tx, event_id=q.event_id, session_id=q.session_id, question_id=q.id,
                              actor_id=conn.user_id, action="dismiss",
                              detail={"reason": reason, "was": q.status})
            await outbox.append(tx, type="moderation.action", event_id=q.event_id, data={
                "room": f"session:{q.session_id}", "action": "qa.dismiss", "question_id": str(q.id),
                "user_id": str(q.user_id), "by": str(conn.user_id), "reason": reason})
            body: dict[str, Any] = {"dismissed_count": count}
            if q.status == "visible":  # attendees saw it: tell them which one went
                body["id"] = str(q.id)
            ev = await stage(tx, room=f"session:{q.session_id}", event="qa:dismissed", data=body,
                             actor_id=conn.user_id)
            return ok(id=str(q.id), status="dismissed", changed=True, dismissed_count=count), \
                [ev, await staff_status(tx, q, "dismiss", conn.user_id, reason=reason)]

        return await moderation(sid, req.room, req.id, "dismiss", act)

    @sio.on("qa:answer", namespace="/live")
    @event_handler
    async def qa_answer(sid: str, data: Any) -> Any:
        req = decode(AnswerIn, data)

        async def act(tx: Any, conn: Conn, q: Question, qs: Any) -> tuple[Any, list[RoomEvent]]:
            if q.status != "visible":
                raise FoyerError("invalid_state", f"the question is {q.status}")
            if (q.answered_at is not None) == req.answered:
                return ok(id=str(q.id), answered=req.answered, changed=False), []
            await store.set_answered(tx, q.id, conn.user_id, req.answered)
            await store.audit(tx, event_id=q.event_id, session_id=q.session_id, question_id=q.id,
                              actor_id=conn.user_id, action="answer" if req.answered else "unanswer")
            if req.answered:
                await outbox.append(tx, type="question.answered", event_id=q.event_id, data={
                    "question_id": str(q.id), "session_id": str(q.session_id), "author_id": str(q.user_id),
                    "text": q.text, "answered_by": str(conn.user_id)})
            ev = await stage(tx, room=f"session:{q.session_id}", event="qa:answered",
                             data={"id": str(q.id), "answered": req.answered}, actor_id=conn.user_id)
            return ok(id=str(q.id), answered=req.answered, changed=True, seq=ev.seq), \
                [ev, await staff_status(tx, q, "answer" if req.answered else "unanswer", conn.user_id)]

        return await moderation(sid, req.room, req.id, "answer", act)

    @sio.on("qa:pin", namespace="/live")
    @event_handler
    async def qa_pin(sid: str, data: Any) -> Any:
        req = decode(PinIn, data)

        async def act(tx: Any, conn: Conn, q: Question, qs: Any) -> tuple[Any, list[RoomEvent]]:
            if req.on and q.status != "visible":
                raise FoyerError("invalid_state", f"the question is {q.status}")
            if q.pinned == req.on:
                return ok(id=str(q.id), pinned=req.on, changed=False), []
            previous = await store.pin(tx, q.session_id, q.id if req.on else None)
            await store.audit(tx, event_id=q.event_id, session_id=q.session_id, question_id=q.id,
                              actor_id=conn.user_id, action="pin" if req.on else "unpin",
                              detail={"previous": str(previous) if previous and req.on else None})
            if req.on:
                body = {"id": str(q.id), "previous": str(previous) if previous is not None else None}
            else:
                body = {"id": None, "previous": str(q.id)}
            ev = await stage(tx, room=f"session:{q.session_id}", event="qa:pinned", data=body, actor_id=conn.user_id)
            return ok(id=str(q.id), pinned=req.on, changed=True, seq=ev.seq, previous=body["previous"]), \
                [ev, await staff_status(tx, q, "pin" if req.on else "unpin", conn.user_id,
                                        previous=body["previous"])]

        return await moderation(sid, req.room, req.id, "pin", act)

    @sio.on("qa:settings", namespace="/live")
    @event_handler
    async def qa_settings(sid: str, data: Any) -> Any:
        req = decode(SettingsIn, data)
        rn = parse_room(req.room)
        member = member_of(live.conn(sid), rn.name)
        if rn.kind == "session":
            session_id = rn.id
            if req.session_id is not None and uid(req.session_id, "session_id") != session_id:
                raise field_error("session_id", "must be this room's session (or omitted)")
        elif rn.kind == "staff" and req.session_id is not None:
            session_id = uid(req.session_id, "session_id")
        else:
            raise field_error("room", "use the session room, or the staff room with session_id")
        async with core.db.transaction("qa.settings") as tx:
            event_id = await session_event_id(tx, session_id)
            if event_id is None or (rn.kind == "staff" and event_id != rn.id):
                raise not_found("session")
            await authorize_action(tx, member.conn, Action.MODERATE_QA, event_id)
            qs = await store.lock_session(tx, session_id, event_id)
            if qs.premoderation == req.premoderation:
                return ok(session_id=str(session_id), premoderation=req.premoderation, changed=False)
            await store.set_premoderation(tx, session_id, req.premoderation)
            await store.audit(tx, event_id=event_id, session_id=session_id, question_id=None,
                              actor_id=member.conn.user_id, action="settings",
                              detail={"premoderation": req.premoderation})
            by = str(member.conn.user_id)
            events = [
                await stage(tx, room=f"session:{session_id}", event="qa:settings",
                            data={"premoderation": req.premoderation}, actor_id=member.conn.user_id),
                await stage(tx, room=f"staff:{event_id}", event="qa:settings", actor_id=member.conn.user_id,
                            data={"session_id": str(session_id), "premoderation": req.premoderation, "by": by}),
            ]
        await deliver(core, *events)
        return ok(session_id=str(session_id), premoderation=req.premoderation, changed=True, seq=events[0].seq)
