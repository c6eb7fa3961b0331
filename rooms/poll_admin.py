"""Poll management (HTTP, rooms/handlers: handlers/polls.py): create and edit drafts, open,
close, delete, list, read — and the room events these transitions emit.

Rights: `polls.manage` (the event's moderators and organizers, admins) for everything except
reading; attendees who may join the event's live rooms (`live.join`) read open and closed polls,
with results when the poll shows them (`results: live`, or once closed). Not visible: `not_found`.

States: draft → open → closed, nothing else (`invalid_state`). Only drafts are edited or
deleted. Opening emits `poll:opened` in the poll's room and the staff room; closing scores a
quiz, freezes the results and emits `poll:closed` (final results, the correct answer, the
leaderboard for quizzes) in both, plus outbox `poll.opened` / `poll.closed`.
"""

from __future__ import annotations

import uuid
from typing import Any

from domain.errors import FoyerError, field_error, not_found
from domain.identity import Principal
from domain.policy import Action, authorize, load_access
from domain.services import Core
from rooms.broadcast import deliver, stage
from rooms.poll_rules import PollBody, definition, public_view, results_view, results_visible, staff_view
from storage import outbox
from storage import polls as store
from storage.polls import Poll
from storage.rooms import session_event_id


def word_top(core: Core) -> int:
    return core.settings.live.poll_wordcloud_top


async def results_of(tx: Any, core: Core, poll: Poll) -> tuple[int, dict[str, Any]]:
    voters, counts = await store.results(tx, poll.id, top=word_top(core) if poll.kind == "word_cloud" else None)
    return voters, results_view(poll, counts)


async def _placement(tx: Any, event_id: uuid.UUID, body: PollBody) -> dict[str, Any]:
    if body.session_id is None:
        return {"session_id": None, "room": f"event:{event_id}"}
    if await session_event_id(tx, body.session_id) != event_id:
        raise field_error("session_id", "not a session of this event")
    return {"session_id": body.session_id, "room": f"session:{body.session_id}"}


async def _managed(tx: Any, principal: Principal | None, poll_id: uuid.UUID, *, lock: str | None = None) -> Poll:
    poll = await store.get_poll(tx, poll_id, lock=lock)
    if poll is None:
        raise not_found("poll")
    await authorize(tx, principal, Action.MANAGE_POLLS, poll.event_id, subject="poll")
    return poll


async def create(core: Core, principal: Principal | None, event_id: uuid.UUID, body: PollBody) -> dict[str, Any]:
    values = definition(body)
    async with core.db.transaction("poll.create") as tx:
        await authorize(tx, principal, Action.MANAGE_POLLS, event_id)
        assert principal is not None
        poll = await store.insert_poll(tx, event_id=event_id, created_by=principal.user_id, **values,
                                       **await _placement(tx, event_id, body))
    return staff_view(poll)


async def replace(core: Core, principal: Principal | None, poll_id: uuid.UUID, body: PollBody) -> dict[str, Any]:
    values = definition(body)
    async with core.db.transaction("poll.replace") as tx:
        poll = await _managed(tx, principal, poll_id, lock="update")
        if poll.state != "draft":
            raise FoyerError("invalid_state", f"the poll is {poll.state}: only drafts can be edited")
        poll = await store.replace_poll(tx, poll_id, **values, **await _placement(tx, poll.event_id, body))
    return staff_view(poll)


async def delete(core: Core, principal: Principal | None, poll_id: uuid.UUID) -> None:
    async with core.db.transaction("poll.delete") as tx:
        poll = await _managed(tx, principal, poll_id, lock="update")
        if poll.state != "draft":
            raise FoyerError("invalid_state", f"the poll is {poll.state}: only drafts can be deleted")
        await store.delete_poll(tx, poll_id)


async def open_poll(core: Core, principal: Principal | None, poll_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.transaction("poll.open") as tx:
        poll = await _managed(tx, principal, poll_id, lock="update")
        if poll.state != "draft":
            raise FoyerError("invalid_state", f"the poll is {poll.state}")
        poll = await store.set_state(tx, poll_id, "open")
        assert principal is not None
        await outbox.append(tx, type="poll.opened", event_id=poll.event_id, data={
            "poll_id": str(poll.id), "room": poll.room, "kind": poll.kind, "by": str(principal.user_id)})
        events = [
            await stage(tx, room=poll.room, event="poll:opened", data={"poll": public_view(poll)},
                        actor_id=principal.user_id),
            await stage(tx, room=f"staff:{poll.event_id}", event="poll:opened", data={"poll": staff_view(poll)},
                        actor_id=principal.user_id),
        ]
    await deliver(core, *events)
    return {**staff_view(poll), "voters": 0, "seq": events[0].seq}


async def close_poll(core: Core, principal: Principal | None, poll_id: uuid.UUID) -> dict[str, Any]:
    """Waits for the votes in flight (they hold the poll row in share mode), then freezes."""
    limit = core.settings.live.poll_leaderboard_size
    async with core.db.transaction("poll.close") as tx:
        poll = await _managed(tx, principal, poll_id, lock="update")
        if poll.state != "open":
            raise FoyerError("invalid_state", f"the poll is {poll.state}")
        poll = await store.set_state(tx, poll_id, "closed")
        assert principal is not None
        if poll.kind == "quiz" and poll.correct:
            await store.score_quiz(tx, poll_id, poll.correct, poll.points)
        voters, results = await results_of(tx, core, poll)
        data: dict[str, Any] = {"poll_id": str(poll.id), "voters": voters, "results": results}
        if poll.kind == "quiz":
            top, _ = await store.leaderboard(tx, poll.event_id, limit=limit)
            data["correct"] = poll.correct
            data["leaderboard"] = [leader_view(r) for r in top]
        await outbox.append(tx, type="poll.closed", event_id=poll.event_id, data={
            "poll_id": str(poll.id), "room": poll.room, "kind": poll.kind, "voters": voters, "results": results,
            "by": str(principal.user_id)})
        events = [await stage(tx, room=poll.room, event="poll:closed", data=data, actor_id=principal.user_id),
                  await stage(tx, room=f"staff:{poll.event_id}", event="poll:closed", data=data,
                              actor_id=principal.user_id)]
    await deliver(core, *events)
    return {**staff_view(poll), "voters": voters, "results": results, "seq": events[0].seq}


def leader_view(r: dict[str, Any]) -> dict[str, Any]:
    return {"rank": r["rank"], "user": {"id": str(r["user_id"]), "name": r["name"]}, "score": r["score"],
            "answered": r["answered"]}


async def _readable(tx: Any, principal: Principal | None, event_id: uuid.UUID) -> bool:
    """True for managers; attendees who may join live rooms get False; others not_found/forbidden."""
    access = await load_access(tx, principal, event_id, subject="poll")
    if access.can(Action.MANAGE_POLLS):
        return True
    from domain.policy import decide

    decide(access, Action.JOIN_LIVE, subject="poll")
    return False


async def with_results(tx: Any, core: Core, poll: Poll, *, manager: bool) -> dict[str, Any]:
    view = staff_view(poll) if manager else public_view(poll)
    voters, results = await results_of(tx, core, poll)
    view["voters"] = voters
    if manager or results_visible(poll):
        view["results"] = results
    return view


async def views_with_results(tx: Any, core: Core, polls: list[Poll], *, manager: bool) -> list[dict[str, Any]]:
    """`with_results` for many polls, with one counters query."""
    many = await store.results_many(tx, [p.id for p in polls])
    top = word_top(core)
    views = []
    for poll in polls:
        voters, counts = many[poll.id]
        if poll.kind == "word_cloud":
            counts = dict(list(counts.items())[:top])
        view = staff_view(poll) if manager else public_view(poll)
        view["voters"] = voters
        if manager or results_visible(poll):
            view["results"] = results_view(poll, counts)
        views.append(view)
    return views


async def get(core: Core, principal: Principal | None, poll_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.transaction("poll.get", isolation="repeatable_read", readonly=True) as tx:
        poll = await store.get_poll(tx, poll_id)
        if poll is None:
            raise not_found("poll")
        manager = await _readable(tx, principal, poll.event_id)
        if poll.state == "draft" and not manager:
            raise not_found("poll")
        return await with_results(tx, core, poll, manager=manager)


async def list_for_event(core: Core, principal: Principal | None, event_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.transaction("poll.list", isolation="repeatable_read", readonly=True) as tx:
        manager = await _readable(tx, principal, event_id)
        polls = await store.list_polls(tx, event_id, include_drafts=manager)
        return {"polls": await views_with_results(tx, core, polls, manager=manager)}
