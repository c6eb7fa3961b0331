"""Chat: send (with replies), edit, delete, reactions, reports, older history.

Rules (each violation is an error ack with a stable code):
- only members of a room may act in it (`not_member`); no chat in `user:` rooms (`forbidden`);
- text is trimmed, 1..`live_chat_max_length` characters (`validation_failed`), and refused
  when it contains a banned word (`message_rejected`);
- muted users may not post (`muted`), banned ones are out (`banned`);
- per-user rate limits across rooms (`rate_limited`, details.retry_after[_ms]) and the room's
  slow mode (`slow_mode`, same details; moderators are exempt from both);
- authors edit/delete their own messages; moderators delete anyone's (never edit);
- `chat:send` is acked `{ok, id, seq}` only once the message is durable (group-committed per
  room, rooms/chatbatch.py); a retry with the same `client_id` returns the first message's id
  and seq (`duplicate: true`) and posts nothing. Mutes and bans are checked when the message
  is accepted: a sanction committed a few milliseconds later does not recall it.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from domain.errors import FoyerError, field_error, not_found
from rooms.broadcast import deliver, stage
from rooms.chatbatch import PendingMessage
from rooms.local import Conn, Member
from rooms.membership import message_view, rate_limited_ms
from rooms.names import CHAT_KINDS, parse_room
from rooms.protocol import (
    ChatEditIn,
    ChatHistoryIn,
    ChatReactIn,
    ChatReportIn,
    ChatSendIn,
    MessageIn,
    decode,
    event_handler,
    ok,
    uid,
)
from storage import chat as chat_store
from storage import outbox
from storage.live_limits import LiveLimits

if TYPE_CHECKING:
    from rooms.service import Live

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def banned_words_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    words = tuple(w.strip() for w in words if w.strip())
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)


def clean_text(text: str, *, max_length: int, banned: re.Pattern[str] | None, field: str = "text") -> str:
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text)).strip()
    if not text:
        raise field_error(field, "must not be empty")
    if len(text) > max_length:
        raise FoyerError("validation_failed", "message too long",
                         details=[{"field": field, "message": f"at most {max_length} characters"}])
    if banned is not None and banned.search(text):
        raise FoyerError("message_rejected", "the message contains a word that is not allowed here",
                         details={"reason": "banned_word"})
    return text


def check_emoji(emoji: str) -> str:
    emoji = emoji.strip()
    if not 1 <= len(emoji) <= 16 or any(c.isspace() or c.isascii() for c in emoji):
        raise field_error("emoji", "must be an emoji")
    return emoji


def member_of(conn: Conn | None, room: str) -> Member:
    if conn is None:
        raise FoyerError("unauthorized", "not connected")
    member = conn.members.get(room)
    if member is None:
        raise FoyerError("not_member", "join the room first")
    return member


def bind(live: Live) -> None:
    core = live.core
    sio = live.sio
    settings = core.settings.live
    banned = banned_words_pattern(settings.live_banned_words)
    _limits: list[LiveLimits] = []

    def limits() -> LiveLimits:
        if not _limits:
            _limits.append(LiveLimits(core.redis, core.keys))
        return _limits[0]

    async def check_rate(member: Member, bucket: str, limit: int) -> None:
        if member.can_moderate:
            return
        wait = await limits().hit(bucket, str(member.conn.user_id), limit=limit,
                                  window=settings.live_chat_rate_window_seconds)
        if wait:
            raise rate_limited_ms(wait)

    def chat_member(sid: str, room_name: str) -> Member:
        rn = parse_room(room_name)
        member = member_of(live.conn(sid), rn.name)
        if rn.kind not in CHAT_KINDS:
            raise FoyerError("forbidden", "there is no chat in private rooms")
        return member

    @sio.on("chat:send", namespace="/live")
    @event_handler
    async def chat_send(sid: str, data: Any) -> Any:
        req = decode(ChatSendIn, data)
        member = chat_member(sid, req.room)
        conn, room = member.conn, member.room
        if not 1 <= len(req.client_id) <= 64:
            raise field_error("client_id", "must be 1 to 64 characters")
        text = clean_text(req.text, max_length=settings.live_chat_max_length, banned=banned)
        reply_to = uid(req.reply_to, "reply_to") if req.reply_to else None
        created = datetime.now(UTC)
        dup, sanction = await chat_store.send_checks(core.db, room.name, conn.user_id, req.client_id)
        if dup is not None:  # a retry: the first result, not a second message (and no rate limit)
            return ok(id=str(dup[0]), seq=dup[1], duplicate=True)
        if sanction is not None:
            kind, until = sanction
            raise FoyerError("banned" if kind == "ban" else "muted",
                             "you are banned from this room" if kind == "ban" else "you are muted in this room",
                             details={"until": until.isoformat() if until else None})
        if reply_to is not None:
            parent = await chat_store.get_message(core.db, room.name, reply_to)
            if parent is None or parent.deleted_at is not None:
                raise not_found("message")
        await check_rate(member, "chat", settings.live_chat_rate_limit)
        if room.slow_mode_seconds and not member.can_moderate:
            wait = await limits().slow_mode(room.name, str(conn.user_id), seconds=room.slow_mode_seconds)
            if wait:
                seconds = max(1, -(-wait // 1000))
                raise FoyerError("slow_mode", f"slow mode: one message every {room.slow_mode_seconds} s",
                                 details={"retry_after": seconds, "retry_after_ms": wait})
        message_id = uuid.uuid4()
        payload: dict[str, Any] = {
            "id": str(message_id), "user": {"id": str(conn.user_id), "name": conn.name or ""},
            "text": text, "ts": int(created.timestamp() * 1000),
        }
        if reply_to is not None:
            payload["reply_to"] = str(reply_to)
        item = PendingMessage(chat_store.NewMessage(id=message_id, user_id=conn.user_id, client_id=req.client_id,
                                                    text=text, reply_to=reply_to, created_at=created), payload)
        return await live.sends.submit(room, item)

    @sio.on("chat:edit", namespace="/live")
    @event_handler
    async def chat_edit(sid: str, data: Any) -> Any:
        req = decode(ChatEditIn, data)
        member = chat_member(sid, req.room)
        message_id = uid(req.id, "id")
        text = clean_text(req.text, max_length=settings.live_chat_max_length, banned=banned)
        await check_rate(member, "act", settings.live_action_rate_limit)
        async with core.db.transaction("chat.edit") as tx:
            msg = await chat_store.get_message(tx, member.room.name, message_id, for_update=True)
            if msg is None or msg.deleted_at is not None:
                raise not_found("message")
            if msg.user_id != member.conn.user_id:
                raise FoyerError("forbidden", "you can only edit your own messages")
            if (await chat_store.active_sanction(tx, member.room.name, member.conn.user_id)) is not None:
                raise FoyerError("muted", "you are muted in this room")
            edited_at = await chat_store.edit_message(tx, message_id, text)
            ev = await stage(tx, room=member.room.name, event="chat:edited", actor_id=member.conn.user_id,
                             data={"id": str(message_id), "text": text,
                                   "edited_at": int(edited_at.timestamp() * 1000)})
        await deliver(core, ev)
        return ok(id=str(message_id), seq=ev.seq)

    @sio.on("chat:delete", namespace="/live")
    @event_handler
    async def chat_delete(sid: str, data: Any) -> Any:
        req = decode(MessageIn, data)
        member = chat_member(sid, req.room)
        message_id = uid(req.id, "id")
        await check_rate(member, "act", settings.live_action_rate_limit)
        async with core.db.transaction("chat.delete") as tx:
            msg = await chat_store.get_message(tx, member.room.name, message_id, for_update=True)
            if msg is None:
                raise not_found("message")
            own = msg.user_id == member.conn.user_id
            if not own and not member.can_moderate:
                raise FoyerError("forbidden", "you can only delete your own messages")
            if msg.deleted_at is not None:
                return ok(id=str(message_id), seq=None, already_deleted=True)
            await chat_store.delete_message(tx, message_id, member.conn.user_id)
            if not own:
                await outbox.append(tx, type="moderation.action", event_id=member.room.event_id, data={
                    "room": member.room.name, "action": "delete_message", "message_id": str(message_id),
                    "user_id": str(msg.user_id), "by": str(member.conn.user_id)})
            ev = await stage(tx, room=member.room.name, event="chat:deleted", actor_id=member.conn.user_id,
                             data={"id": str(message_id), "by": "author" if own else "moderator"})
        await deliver(core, ev)
        return ok(id=str(message_id), seq=ev.seq)

    @sio.on("chat:react", namespace="/live")
    @event_handler
    async def chat_react(sid: str, data: Any) -> Any:
        req = decode(ChatReactIn, data)
        member = chat_member(sid, req.room)
        message_id = uid(req.id, "id")
        emoji = check_emoji(req.emoji)
        await check_rate(member, "act", settings.live_action_rate_limit)
        async with core.db.transaction("chat.react") as tx:
            msg = await chat_store.get_message(tx, member.room.name, message_id)
            if msg is None or msg.deleted_at is not None:
                raise not_found("message")
            changed, count = await chat_store.set_reaction(tx, message_id, member.conn.user_id, emoji, req.on)
            if not changed:
                return ok(id=str(message_id), emoji=emoji, count=count, seq=None)
            ev = await stage(tx, room=member.room.name, event="chat:reaction", actor_id=member.conn.user_id,
                             data={"id": str(message_id), "emoji": emoji, "count": count,
                                   "user_id": str(member.conn.user_id), "on": req.on})
        await deliver(core, ev)
        return ok(id=str(message_id), emoji=emoji, count=count, seq=ev.seq)

    @sio.on("chat:report", namespace="/live")
    @event_handler
    async def chat_report(sid: str, data: Any) -> Any:
        req = decode(ChatReportIn, data)
        member = chat_member(sid, req.room)
        message_id = uid(req.id, "id")
        reason = req.reason.strip()
        if len(reason) > 500:
            raise field_error("reason", "at most 500 characters")
        await check_rate(member, "act", settings.live_action_rate_limit)
        room = member.room
        async with core.db.transaction("chat.report") as tx:
            msg = await chat_store.get_message(tx, room.name, message_id)
            if msg is None:
                raise not_found("message")
            report_id, created = await chat_store.insert_report(
                tx, room=room.name, message_id=message_id, reporter_id=member.conn.user_id, reason=reason)
            ev = None
            if created:
                await outbox.append(tx, type="message.reported", event_id=room.event_id, data={
                    "report_id": str(report_id), "room": room.name, "message_id": str(message_id),
                    "reporter_id": str(member.conn.user_id), "reason": reason})
                if room.event_id is not None:
                    ev = await stage(tx, room=f"staff:{room.event_id}", event="chat:reported",
                                     actor_id=member.conn.user_id, data={
                                         "report_id": str(report_id), "in_room": room.name, "reason": reason,
                                         "message": {"id": str(message_id), "text": msg.text,
                                                     "user_id": str(msg.user_id)},
                                         "reporter": {"id": str(member.conn.user_id), "name": member.conn.name}})
        if ev is not None:
            await deliver(core, ev)
        return ok(id=str(report_id), duplicate=not created)

    @sio.on("chat:history", namespace="/live")
    @event_handler
    async def chat_history(sid: str, data: Any) -> Any:
        req = decode(ChatHistoryIn, data)
        rn = parse_room(req.room)
        member_of(live.conn(sid), rn.name)
        if not 1 <= req.limit <= 100:
            raise field_error("limit", "must be between 1 and 100")
        rows = await chat_store.history(core.db, rn.name, upto_seq=req.before_seq - 1, limit=req.limit)
        return ok(room=rn.name, messages=[message_view(r, rn.name) for r in rows])
