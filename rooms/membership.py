"""`room:join` and `room:leave`.

`room:join {room, last_seq?, epoch?}` answers
    {ok, room, seq, epoch, presence, history: [{event, data}], resync?, snapshot?}
- with a usable `last_seq`: `history` is exactly the room events after it, in order, from the
  replay stream (any node), and `seq` the position after them;
- otherwise (fresh join, or `last_seq` too old / stream lost / epoch changed → `resync: true`):
  `history` is the last `live_history_size` chat messages in their current state and
  `snapshot` the current state other room features contribute, read in one consistent
  PostgreSQL snapshot together with `seq` (join storms share a snapshot for up to half a second
  while the room has no new event).
After the ack, the member receives every room event with a seq greater than the ack's `seq`,
exactly once and in order; nothing from before it, never before the ack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from domain.errors import FoyerError, field_error
from rooms.broadcast import streams_of
from rooms.local import LocalRoom, event_json
from rooms.names import RoomName, authorize_join, parse_room
from rooms.protocol import JoinIn, RoomIn, decode, event_handler, ok
from server.realtime import AfterAck
from storage import chat as chat_store
from storage import outbox
from storage import rooms as room_store
from storage.live_limits import LiveLimits

if TYPE_CHECKING:
    from rooms.service import Live

SNAPSHOT_CACHE_SECONDS = 0.5
PRESENCE_CACHE_SECONDS = 0.5

# name -> fn(conn, room name, seq) -> JSON-able state, run inside the snapshot transaction
SnapshotFn = Callable[[Any, RoomName, int], Awaitable[Any]]


def message_view(row: dict[str, Any], room: str) -> dict[str, Any]:
    """A chat message as `chat:message` data (history and snapshots use the same shape)."""
    view: dict[str, Any] = {
        "id": str(row["id"]), "room": room, "seq": row["seq"],
        "user": {"id": str(row["user_id"]), "name": row["name"]},
        "text": row["text"], "ts": int(row["created_at"].timestamp() * 1000),
    }
    if row.get("reply_to"):
        view["reply_to"] = str(row["reply_to"])
    if row.get("edited_at"):
        view["edited_at"] = int(row["edited_at"].timestamp() * 1000)
    if row.get("reactions"):
        view["reactions"] = row["reactions"]
    return view


def bind(live: Live) -> None:
    core = live.core
    sio = live.sio
    settings = core.settings.live
    limits = LiveLimits(core.redis, core.keys) if core.redis is not None else None

    def limiter() -> LiveLimits:
        nonlocal limits
        if limits is None:
            limits = LiveLimits(core.redis, core.keys)
        return limits

    @sio.on("room:join", namespace="/live")
    @event_handler
    async def room_join(sid: str, data: Any) -> Any:
        req = decode(JoinIn, data)
        rn = parse_room(req.room)
        if req.last_seq is not None and req.last_seq < 0:
            raise field_error("last_seq", "must be >= 0")
        conn = live.conn(sid)
        if conn is None:
            raise FoyerError("unauthorized", "not connected")
        if rn.name not in conn.members and len(conn.members) >= settings.live_max_rooms_per_connection:
            raise FoyerError("limit_exceeded", "this connection is in too many rooms",
                             details={"max": settings.live_max_rooms_per_connection})
        wait = await limiter().hit("act", str(conn.user_id), limit=settings.live_action_rate_limit,
                                   window=settings.live_chat_rate_window_seconds)
        if wait:
            raise rate_limited_ms(wait)
        async with core.db.transaction("room.join") as tx:
            grant = await authorize_join(tx, conn.principal, rn)
            name, banned = await chat_store.join_checks(tx, rn.name, conn.user_id)
            if name is None:
                raise FoyerError("unauthorized", "this account is not active")
            conn.name = name
            if banned is not False and rn.kind != "user":
                raise FoyerError("banned", "you are banned from this room",
                                 details={"until": banned.isoformat() if banned else None})
            await outbox.append(tx, type="room.joined", event_id=grant.event_id, data={
                "room": rn.name, "user_id": str(conn.user_id), "node": core.node_id,
                "rejoin": req.last_seq is not None,
            }, notify=False)
        if rn.name not in live.rooms:  # an open local room implies its row exists
            # its own statement, committed at once: a join storm on a new room must not queue
            # behind one joiner's transaction for the row's unique-index entry
            await room_store.ensure_room(core.db, rn.name, grant.event_id)
        room = await live.open_room(rn.name, grant.event_id)
        member = live.add_member(conn, room, can_moderate=grant.can_moderate)
        try:
            ack = await join_ack(live, room, rn, req.last_seq, req.epoch)
            ack["presence"] = await live.presence.summary(room, max_age=PRESENCE_CACHE_SECONDS)
        except BaseException:
            live.leave(conn, rn.name)
            raise
        if grant.can_moderate:
            ack["moderator"] = True
        if room.slow_mode_seconds:
            ack["slow_mode"] = room.slow_mode_seconds
        seq = ack["seq"]

        def go_live() -> None:
            if conn.members.get(rn.name) is member:
                room.make_ready(member, seq)

        return AfterAck(ack, go_live)

    @sio.on("room:leave", namespace="/live")
    @event_handler
    async def room_leave(sid: str, data: Any) -> Any:
        req = decode(RoomIn, data)
        rn = parse_room(req.room)
        conn = live.conn(sid)
        if conn is None:
            raise FoyerError("unauthorized", "not connected")
        return ok(room=rn.name, left=live.leave(conn, rn.name))


async def join_ack(live: Live, room: LocalRoom, rn: RoomName, last_seq: int | None, epoch: str | None) -> dict[str, Any]:
    core = live.core
    store = streams_of(core)
    if last_seq is not None:
        meta, entries = await store.read(rn.name, after=last_seq, count=core.settings.live.live_stream_maxlen)
        if meta is not None and (epoch is None or epoch == meta.epoch):
            if last_seq >= meta.last:
                return ok(room=rn.name, seq=last_seq, epoch=meta.epoch, history=[])
            if entries and entries[0][0] == last_seq + 1 and entries[-1][0] - entries[0][0] + 1 == len(entries):
                history = []
                for seq, body in entries:
                    event, _, data = body.partition(b"\n")
                    history.append({"event": event.decode(),
                                    "data": orjson.Fragment(event_json(room.room_json, seq, data))})
                return ok(room=rn.name, seq=entries[-1][0], epoch=meta.epoch, history=history)
    ack = await cached_snapshot(live, room, rn)
    if last_seq is not None:
        ack["resync"] = True
    return ack


async def cached_snapshot(live: Live, room: LocalRoom, rn: RoomName) -> dict[str, Any]:
    """A fresh-join snapshot. A keynote's join storm must not run one PostgreSQL snapshot per
    joiner: a snapshot taken at seq S less than SNAPSHOT_CACHE_SECONDS ago is reused as long as
    the room has had no event since S (checked on the replay stream), so it is exactly what a
    new snapshot would return, up to state that changes without a room event (coalesced counters,
    which their next broadcast carries)."""
    loop = asyncio.get_running_loop()
    cached = room.snapshot_cache
    if cached is not None and loop.time() - cached[0] < SNAPSHOT_CACHE_SECONDS:
        base = cached[1]
        meta = await streams_of(live.core).meta(rn.name)
        if meta is not None and meta.last <= base["seq"]:
            return ok(room=rn.name, seq=base["seq"], epoch=meta.epoch, history=list(base["history"]),
                      snapshot=base["snapshot"])
    ack = await snapshot(live, rn)
    room.snapshot_cache = (loop.time(), ack)
    return dict(ack)


async def snapshot(live: Live, rn: RoomName) -> dict[str, Any]:
    """History and contributed state as of one consistent PostgreSQL snapshot, with its seq."""
    core = live.core
    async with core.db.transaction("room.snapshot", isolation="repeatable_read", readonly=True) as tx:
        seq = await room_store.room_seq(tx, rn.name)
        rows = await chat_store.history(tx, rn.name, upto_seq=seq, limit=core.settings.live.live_history_size)
        state: dict[str, Any] = {}
        for name, fn in live.snapshot_contributors.items():
            state[name] = await fn(tx, rn, seq)
    meta = await streams_of(core).meta(rn.name)
    history = [{"event": "chat:message", "data": message_view(r, rn.name)} for r in rows]
    return ok(room=rn.name, seq=seq, epoch=meta.epoch if meta else None, history=history, snapshot=state)


def rate_limited_ms(wait_ms: int, message: str = "too many actions, slow down") -> FoyerError:
    seconds = max(1, -(-wait_ms // 1000))
    return FoyerError("rate_limited", message, details={"retry_after": seconds, "retry_after_ms": wait_ms},
                      headers={"Retry-After": str(seconds)})
