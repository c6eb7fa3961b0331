"""Moderation of a room: mute/unmute, ban/unban, slow mode (deleting messages is chat:delete).

Only members whose role grants `live.moderate` on the room's event (organizers, moderators,
admins; decided at join by domain/policy.py) may moderate (`forbidden` otherwise). Staff of the
event cannot be muted or banned (`forbidden`). Every action is a durable room event (the audit
trail, with the actor in `room_events.actor_id`) and an outbox `moderation.action` row:
- `mod:muted {user_id, until, by}` / `mod:unmuted {user_id, by}`
- `mod:banned {user_id, until, by}` — every node also removes that user's connections from the
  room (they get `room:kicked {room, seq, reason}`), and later joins answer `banned`
- `mod:unbanned {user_id, by}`
- `room:slow_mode {seconds, by}` — one message per user per `seconds` (0 = off)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from domain.errors import FoyerError, field_error, not_found
from domain.identity import Principal
from domain.policy import load_access
from rooms.broadcast import deliver, stage
from rooms.chat import member_of
from rooms.local import Member
from rooms.names import parse_room, require_moderator
from rooms.protocol import SanctionIn, SlowModeIn, UserIn, decode, event_handler, ok, uid
from storage import chat as chat_store
from storage import outbox
from storage import rooms as room_store

if TYPE_CHECKING:
    from rooms.service import Live

MAX_SANCTION_SECONDS = 366 * 86400


def bind(live: Live) -> None:
    core = live.core
    sio = live.sio

    def moderator(sid: str, room_name: str) -> Member:
        rn = parse_room(room_name)
        member = member_of(live.conn(sid), rn.name)
        if rn.kind == "user":
            raise FoyerError("forbidden", "private rooms are not moderated")
        require_moderator(member.can_moderate)
        return member

    async def sanction(sid: str, data: Any, kind: str) -> Any:
        req = decode(SanctionIn, data)
        member = moderator(sid, req.room)
        target = uid(req.user_id, "user_id")
        if target == member.conn.user_id:
            raise FoyerError("forbidden", "you cannot sanction yourself")
        if req.duration_seconds is not None and not 1 <= req.duration_seconds <= MAX_SANCTION_SECONDS:
            raise field_error("duration_seconds", f"must be between 1 and {MAX_SANCTION_SECONDS}")
        if len(req.reason) > 500:
            raise field_error("reason", "at most 500 characters")
        until = datetime.now(UTC) + timedelta(seconds=req.duration_seconds) if req.duration_seconds else None
        room = member.room
        async with core.db.transaction(f"room.{kind}") as tx:
            if not await chat_store.user_is_known(tx, target):
                raise not_found("user")
            if room.event_id is not None:
                access = await load_access(tx, Principal(user_id=target), room.event_id)
                if access.is_staff:
                    raise FoyerError("forbidden", "staff of the event cannot be muted or banned")
            await room_store.ensure_room(tx, room.name, room.event_id)
            await chat_store.set_sanction(tx, room=room.name, user_id=target, kind=kind, until=until,
                                          reason=req.reason.strip(), by=member.conn.user_id)
            await outbox.append(tx, type="moderation.action", event_id=room.event_id, data={
                "room": room.name, "action": kind, "user_id": str(target), "by": str(member.conn.user_id),
                "until": until.isoformat() if until else None, "reason": req.reason.strip()})
            ev = await stage(tx, room=room.name, event="mod:muted" if kind == "mute" else "mod:banned",
                             actor_id=member.conn.user_id,
                             data={"user_id": str(target), "until": int(until.timestamp() * 1000) if until else None,
                                   "by": str(member.conn.user_id)})
        await deliver(core, ev)
        return ok(seq=ev.seq, user_id=str(target), until=until.isoformat() if until else None)

    async def lift(sid: str, data: Any, kind: str) -> Any:
        req = decode(UserIn, data)
        member = moderator(sid, req.room)
        target = uid(req.user_id, "user_id")
        room = member.room
        async with core.db.transaction(f"room.un{kind}") as tx:
            if not await chat_store.lift_sanction(tx, room=room.name, user_id=target, kind=kind):
                return ok(seq=None, user_id=str(target), lifted=False)
            await outbox.append(tx, type="moderation.action", event_id=room.event_id, data={
                "room": room.name, "action": f"un{kind}", "user_id": str(target), "by": str(member.conn.user_id)})
            ev = await stage(tx, room=room.name, event="mod:unmuted" if kind == "mute" else "mod:unbanned",
                             actor_id=member.conn.user_id,
                             data={"user_id": str(target), "by": str(member.conn.user_id)})
        await deliver(core, ev)
        return ok(seq=ev.seq, user_id=str(target), lifted=True)

    @sio.on("mod:mute", namespace="/live")
    @event_handler
    async def mod_mute(sid: str, data: Any) -> Any:
        return await sanction(sid, data, "mute")

    @sio.on("mod:ban", namespace="/live")
    @event_handler
    async def mod_ban(sid: str, data: Any) -> Any:
        return await sanction(sid, data, "ban")

    @sio.on("mod:unmute", namespace="/live")
    @event_handler
    async def mod_unmute(sid: str, data: Any) -> Any:
        return await lift(sid, data, "mute")

    @sio.on("mod:unban", namespace="/live")
    @event_handler
    async def mod_unban(sid: str, data: Any) -> Any:
        return await lift(sid, data, "ban")

    @sio.on("mod:slow_mode", namespace="/live")
    @event_handler
    async def mod_slow_mode(sid: str, data: Any) -> Any:
        req = decode(SlowModeIn, data)
        member = moderator(sid, req.room)
        if not 0 <= req.seconds <= 3600:
            raise field_error("seconds", "must be between 0 and 3600")
        room = member.room
        async with core.db.transaction("room.slow_mode") as tx:
            await room_store.ensure_room(tx, room.name, room.event_id)
            await room_store.set_slow_mode(tx, room.name, req.seconds)
            await outbox.append(tx, type="moderation.action", event_id=room.event_id, data={
                "room": room.name, "action": "slow_mode", "seconds": req.seconds, "by": str(member.conn.user_id)})
            ev = await stage(tx, room=room.name, event="room:slow_mode", actor_id=member.conn.user_id,
                             data={"seconds": req.seconds, "by": str(member.conn.user_id)})
        await deliver(core, ev)
        return ok(seq=ev.seq, seconds=req.seconds)
