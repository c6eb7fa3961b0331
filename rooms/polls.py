"""Polls in live rooms: voting, coalesced live results, reading, the quiz leaderboard.

A poll belongs to `session:{id}` (a session poll) or `event:{id}` (an event-wide poll); members
of that room vote in it. Management (draft → open → closed) is HTTP: rooms/poll_admin.py.

Guarantees:
- one vote per user per poll, enforced by PostgreSQL (primary key); concurrent double submits
  on any nodes count once; with `allow_change` a later vote replaces the first in the same
  transaction (counters moved, never double counted), otherwise it is `already_voted`; a retry
  with the same `client_id` answers `duplicate: true`;
- a vote is acked only once committed; it commits before the poll closes (and is in the final
  results) or is refused with `poll_closed`;
- results are counters kept in the vote's transaction (exact after a restart); the room gets
  them as `poll:results` coalesced — at most `poll_result_max_hz` per poll across all nodes,
  the last change always sent — so 10k votes are a handful of broadcasts, not 10k;
- `results: after_close` polls show attendees only the voter count until closed; the staff room
  gets full results of every poll live.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from domain.errors import FoyerError, field_error, not_found
from rooms.broadcast import deliver, stage
from rooms.chat import member_of
from rooms.engage import Engagement
from rooms.names import RoomName, parse_room
from rooms.poll_admin import leader_view, results_of, views_with_results, with_results
from rooms.poll_rules import folded_banned, results_visible, staff_view, vote_keys
from rooms.protocol import decode, event_handler, ok, uid
from storage import outbox
from storage import polls as store
from storage.polls import VOTERS, shard_of

if TYPE_CHECKING:
    from rooms.service import Live

SNAPSHOT_POLLS = 20


class _In(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class VoteIn(_In):
    room: str
    poll_id: str
    client_id: str
    option: str | None = None
    options: list[str] | None = None
    value: int | None = None
    text: str | None = None


class PollRefIn(_In):
    room: str
    poll_id: str


class LeaderboardIn(_In):
    room: str
    limit: int = 10


def make_snapshot(core: Any):
    async def snapshot(tx: Any, rn: RoomName, seq: int) -> dict[str, Any] | None:
        """`event:`/`session:` rooms: their open and closed polls (newest first, at most 20) with
        the voter count and, when shown, results. `staff:` rooms: every poll of the event,
        drafts included, staff view with results."""
        if rn.kind in ("event", "session"):
            polls = await store.room_polls(tx, rn.name, limit=SNAPSHOT_POLLS)
            return {"polls": await views_with_results(tx, core, polls, manager=False)}
        if rn.kind == "staff":
            polls = await store.list_polls(tx, rn.id, include_drafts=True, limit=SNAPSHOT_POLLS * 2)
            return {"polls": await views_with_results(tx, core, polls, manager=True)}
        return None

    return snapshot


def bind(live: Live, eng: Engagement) -> None:
    core = live.core
    sio = live.sio
    settings = core.settings.live
    banned = folded_banned(settings.live_banned_words)
    live.add_snapshot("polls", make_snapshot(core))

    async def send_results(key: str) -> None:
        """Coalesced `poll:results {poll_id, voters, results?}` to the poll's room (results only
        when shown to attendees) and full results to the staff room."""
        poll_id = uuid.UUID(key)
        async with core.db.transaction("poll.results") as tx:
            poll = await store.get_poll(tx, poll_id)
            if poll is None or poll.state == "draft":
                return
            voters, results = await results_of(tx, core, poll)
            full = {"poll_id": key, "voters": voters, "results": results}
            events = [
                await stage(tx, room=poll.room, event="poll:results",
                            data=full if results_visible(poll) else {"poll_id": key, "voters": voters}),
                await stage(tx, room=f"staff:{poll.event_id}", event="poll:results", data=full),
            ]
        await deliver(core, *events)

    eng.coalescer.register("poll", hz=settings.poll_result_max_hz, send=send_results)

    def poll_member(sid: str, room: str) -> tuple[Any, RoomName]:
        rn = parse_room(room)
        if rn.kind not in ("event", "session"):
            raise field_error("room", "polls live in event and session rooms")
        return member_of(live.conn(sid), rn.name), rn

    @sio.on("poll:vote", namespace="/live")
    @event_handler
    async def poll_vote(sid: str, data: Any) -> Any:
        req = decode(VoteIn, data)
        member, rn = poll_member(sid, req.room)
        poll_id = uid(req.poll_id, "poll_id")
        if not 1 <= len(req.client_id) <= 64:
            raise field_error("client_id", "must be 1 to 64 characters")
        user_id = member.conn.user_id
        await eng.rate(member, user_id, "poll_vote", limit=settings.live_action_rate_limit,
                       window=settings.live_chat_rate_window_seconds)
        async with core.db.transaction("poll.vote") as tx:
            poll = await store.get_poll(tx, poll_id, lock="share")
            if poll is None or poll.room != rn.name or poll.state == "draft":
                raise not_found("poll")
            if poll.state == "closed":
                raise FoyerError("poll_closed", "this poll is closed")
            keys = vote_keys(poll, option=req.option, options=req.options, value=req.value, text=req.text,
                             banned=banned, max_word=settings.poll_word_max_length)
            shard = shard_of(user_id)
            changed = False
            if await store.insert_vote(tx, poll_id, user_id, req.client_id, keys):
                await store.bump(tx, poll_id, shard, {VOTERS: 1, **dict.fromkeys(keys, 1)})
            else:
                existing = await store.get_vote(tx, poll_id, user_id, for_update=True)
                assert existing is not None
                old_client_id, old_keys = existing
                if old_client_id == req.client_id:
                    return ok(poll_id=str(poll_id), choices=old_keys, duplicate=True)
                if not poll.allow_change:
                    raise FoyerError("already_voted", "you have already voted in this poll")
                if old_keys == keys:
                    return ok(poll_id=str(poll_id), choices=keys, changed=False)
                deltas = dict.fromkeys(old_keys, -1)
                for k in keys:
                    deltas[k] = deltas.get(k, 0) + 1
                await store.replace_vote(tx, poll_id, user_id, req.client_id, keys)
                await store.bump(tx, poll_id, shard, deltas)
                changed = True
            await outbox.append(tx, type="vote.cast", event_id=poll.event_id, data={
                "poll_id": str(poll_id), "room": poll.room, "kind": poll.kind, "user_id": str(user_id),
                "changed": changed})
        await eng.coalescer.mark("poll", str(poll_id))
        return ok(poll_id=str(poll_id), choices=keys, changed=changed)

    @sio.on("poll:get", namespace="/live")
    @event_handler
    async def poll_get(sid: str, data: Any) -> Any:
        req = decode(PollRefIn, data)
        member, rn = poll_member(sid, req.room)
        poll_id = uid(req.poll_id, "poll_id")
        async with core.db.transaction("poll.get", isolation="repeatable_read", readonly=True) as tx:
            poll = await store.get_poll(tx, poll_id)
            if poll is None or poll.room != rn.name or poll.state == "draft":
                raise not_found("poll")
            view = await with_results(tx, core, poll, manager=False)
            mine = await store.get_vote(tx, poll_id, member.conn.user_id)
        return ok(poll=view, mine=mine[1] if mine else None)

    @sio.on("poll:leaderboard", namespace="/live")
    @event_handler
    async def poll_leaderboard(sid: str, data: Any) -> Any:
        req = decode(LeaderboardIn, data)
        rn = parse_room(req.room)
        member = member_of(live.conn(sid), rn.name)
        if member.room.event_id is None:
            raise field_error("room", "the leaderboard belongs to an event's rooms")
        if not 1 <= req.limit <= 100:
            raise field_error("limit", "must be between 1 and 100")
        async with core.db.transaction("poll.leaderboard", readonly=True) as tx:
            top, me = await store.leaderboard(tx, member.room.event_id, limit=req.limit,
                                              user_id=member.conn.user_id)
        return ok(leaderboard=[leader_view(r) for r in top],
                  me={"rank": me["rank"], "score": me["score"], "answered": me["answered"]} if me else None)


__all__ = ["bind", "staff_view"]
