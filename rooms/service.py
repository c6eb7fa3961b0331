"""`Live`: this node's live-room state — connections, local rooms, the bus, catch-up.

Invariants:
- A `LocalRoom` exists exactly while it has members, plus a short linger after the last one
  leaves (so a reconnect storm does not churn subscriptions); it is subscribed to its channel
  for that whole time.
- A room's `last_seq` only moves forward and only by delivering events in order (or by a
  `room:resync` notice to members when the node fell too far behind to catch up).
- All handlers that touch these structures are synchronous between awaits; there is no lock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from domain.errors import FoyerError
from domain.identity import Principal
from domain.services import Core
from rooms.broadcast import dumps, repair, streams_of
from rooms.bus import Bus
from rooms.chatbatch import SendBatcher
from rooms.local import Conn, LocalRoom, Member, decode_data
from rooms.presence import Presence
from server.realtime import FoyerServer
from storage import rooms as room_store
from storage.rooms import encode_body

log = logging.getLogger("foyer.rooms")

MAX_CATCH_UP = 5000  # events; further behind, members are told to resync instead
LINGER_SECONDS = 15.0
SWEEP_EVERY = 5.0


class Live:
    def __init__(self, core: Core, sio: FoyerServer) -> None:
        self.core = core
        self.sio = sio
        self.settings = core.settings.live
        self.conns: dict[str, Conn] = {}
        self.rooms: dict[str, LocalRoom] = {}
        self.bus = Bus(core, channel_of=lambda name: streams_of(core).channel(name),
                       on_first_subscribed=self._on_first_subscribed, on_resubscribed=self._on_resubscribed)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._fill_locks: dict[str, asyncio.Lock] = {}
        self._delivered_closed = 0
        self.presence = Presence(core, self.rooms)
        self.sends = SendBatcher(core)
        # name -> fn(conn, RoomName, seq): state added to join snapshots (see add_snapshot)
        self.snapshot_contributors: dict[str, Any] = {}
        sio.connect_hooks.append(self.on_connect)
        sio.disconnect_hooks.append(self.on_disconnect)

    @property
    def streams(self) -> room_store.StreamStore:
        return streams_of(self.core)

    # --- lifecycle ----------------------------------------------------------------------------

    def delivered_total(self) -> int:
        return self._delivered_closed + sum(r.delivered for r in self.rooms.values())

    def add_snapshot(self, name: str, fn: Any) -> None:
        """Contribute `snapshot[name]` to fresh/resync join acks: `await fn(conn, room_name, seq)`
        runs inside the join's REPEATABLE READ snapshot, so it is consistent with `seq`."""
        if name in self.snapshot_contributors:
            raise ValueError(f"snapshot contributor {name!r} already registered")
        self.snapshot_contributors[name] = fn

    async def start(self) -> None:
        await self.bus.start()
        self.presence.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="live-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, *([self._sweeper] if self._sweeper else []), return_exceptions=True)
        await self.presence.stop()
        await self.bus.stop()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("live background task failed", exc_info=task.exception())

    # --- connections ----------------------------------------------------------------------------

    def on_connect(self, sid: str, principal: Principal) -> None:
        self.conns[sid] = Conn(sid, principal)
        self.presence.connected(principal.user_id)

    def on_disconnect(self, sid: str) -> None:
        """O(rooms of this connection); never awaits (a mass disconnect must not stall the loop)."""
        conn = self.conns.pop(sid, None)
        if conn is None:
            return
        for name in list(conn.members):
            self.leave(conn, name)
        self.presence.disconnected(conn.user_id)

    def conn(self, sid: str) -> Conn | None:
        conn = self.conns.get(sid)
        if conn is not None and conn.writer is None:
            conn.writer = self.sio.writer_for(sid)
        return conn

    # --- rooms ----------------------------------------------------------------------------------

    async def open_room(self, name: str, event_id: uuid.UUID | None) -> LocalRoom:
        """The local room, subscribed and with a known baseline (waits at most 5 s)."""
        room = self.rooms.get(name)
        if room is None:
            room = LocalRoom(name, event_id=event_id, gap_delay=self.settings.live_gap_repair_seconds,
                             flush_interval=self.settings.live_fanout_min_interval_ms / 1000.0,
                             on_gap=self._on_gap, on_control=self._on_control)
            self.rooms[name] = room
            self.bus.attach(room)
        if room.linger is not None:
            room.linger.cancel()
            room.linger = None
        assert room.ready is not None
        if not room.ready.done():
            try:
                await asyncio.wait_for(asyncio.shield(room.ready), 5.0)
            except Exception:
                if self.rooms.get(name) is room and not room.members:
                    del self.rooms[name]
                    self.bus.detach(room)
                raise FoyerError("unavailable", "live rooms are temporarily unavailable, retry",
                                 details={"retry_after": 1}) from None
        elif room.ready.exception() is not None:
            raise FoyerError("unavailable", "live rooms are temporarily unavailable, retry",
                             details={"retry_after": 1})
        return room

    def add_member(self, conn: Conn, room: LocalRoom, *, can_moderate: bool) -> Member:
        old = conn.members.get(room.name)
        if old is not None:
            room.remove(conn.sid)
        member = Member(conn, room, can_moderate=can_moderate)
        conn.members[room.name] = member
        room.add(member)
        return member

    def leave(self, conn: Conn, name: str) -> bool:
        member = conn.members.pop(name, None)
        room = self.rooms.get(name)
        if member is None or room is None:
            return False
        room.remove(conn.sid)
        if not room.members and room.linger is None:
            room.linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self._close_if_empty, room)
        return True

    def _close_if_empty(self, room: LocalRoom) -> None:
        room.linger = None
        if room.members or self.rooms.get(room.name) is not room:
            return
        del self.rooms[room.name]
        self._delivered_closed += room.delivered
        self.bus.detach(room)
        if room.gap_handle is not None:
            room.gap_handle.cancel()

    # --- bus callbacks ----------------------------------------------------------------------------

    def _on_first_subscribed(self, room: LocalRoom) -> None:
        self.spawn(self._baseline(room))

    async def _baseline(self, room: LocalRoom) -> None:
        """Subscribed: the baseline is the stream's last seq (events after it will arrive on the
        channel), or PostgreSQL's when there is no stream."""
        try:
            meta = await self.streams.meta(room.name)
            row = await room_store.get_room(self.core.db, room.name)
        except Exception as exc:
            log.exception("baseline of %s failed", room.name)
            if self.rooms.get(room.name) is room:
                del self.rooms[room.name]
            self.bus.detach(room)
            if room.ready is not None and not room.ready.done():
                room.ready.set_exception(exc)
                room.ready.exception()  # mark retrieved: joiners see it through open_room
            return
        if row is not None:
            room.slow_mode_seconds = row.slow_mode_seconds
        self._set_baseline(room, meta.last if meta is not None else (row.seq if row else 0))
        if room.ready is not None and not room.ready.done():
            room.ready.set_result(None)

    def _set_baseline(self, room: LocalRoom, base: int) -> None:
        room.last_seq = max(room.last_seq, base)
        for seq in [s for s in room.held if s <= room.last_seq]:
            del room.held[seq]
        while room.held:
            nxt = room.held.pop(room.last_seq + 1, None)
            if nxt is None:
                room.schedule_gap_check(room.gap_delay)
                break
            room.offer(room.last_seq + 1, nxt)

    def _on_resubscribed(self, room: LocalRoom) -> None:
        self.spawn(self.catch_up(room))

    def _on_gap(self, room: LocalRoom) -> None:
        if room.held:
            self.spawn(self.fill(room, min(room.held) - 1))

    def _on_control(self, room: LocalRoom, event: bytes, data: bytes) -> None:
        try:
            payload = decode_data(data)
        except ValueError:
            return
        if event == b"room:slow_mode":
            room.slow_mode_seconds = int(payload.get("seconds") or 0)
        elif event == b"mod:banned":
            user_id = payload.get("user_id")
            asyncio.get_running_loop().call_soon(self._kick, room, str(user_id), "banned")

    def _kick(self, room: LocalRoom, user_id: str, reason: str) -> None:
        body = dumps({"reason": reason})
        for member in [m for m in room.members.values() if str(m.conn.user_id) == user_id]:
            if member.ready:
                room.send_to(member, b"room:kicked", body)
            self.leave(member.conn, room.name)

    # --- catching up ------------------------------------------------------------------------------

    async def catch_up(self, room: LocalRoom) -> None:
        """After a re-subscription: deliver whatever was published while we were not listening."""
        meta = await self.streams.meta(room.name)
        target = meta.last if meta is not None else await room_store.room_seq(self.core.db, room.name)
        if target > room.last_seq:
            await self.fill(room, target)

    async def fill(self, room: LocalRoom, upto: int) -> None:
        """Deliver events (room.last_seq, upto] from the replay stream, else from PostgreSQL."""
        lock = self._fill_locks.setdefault(room.name, asyncio.Lock())
        async with lock:
            after = room.last_seq
            if upto <= after:
                return
            if upto - after > MAX_CATCH_UP:
                self.resync_members(room, upto)
                return
            have = dict(await self.streams.range(room.name, after=after, before=upto + 1))
            missing = [s for s in range(after + 1, upto + 1) if s not in have]
            if missing:
                rows = await room_store.load_events(self.core.db, room.name, after=missing[0] - 1,
                                                    before=missing[-1] + 1, limit=MAX_CATCH_UP)
                for seq, event, data in rows:
                    have.setdefault(seq, encode_body(event, dumps(data)))
                if len(missing) > 0:
                    log.warning("%s: filled %d missed event(s) from PostgreSQL", room.name, len(missing))
            for seq in range(after + 1, upto + 1):
                body = have.get(seq)
                if body is None:
                    log.error("%s: event #%d is in neither the stream nor PostgreSQL; skipping it", room.name, seq)
                    room.last_seq = max(room.last_seq, seq)
                    continue
                room.offer(seq, body)
        if not room.members and not self.rooms.get(room.name):
            self._fill_locks.pop(room.name, None)

    def resync_members(self, room: LocalRoom, upto: int) -> None:
        log.warning("%s: %d events behind; asking members to resync", room.name, upto - room.last_seq)
        room.last_seq = upto
        room.held = {s: b for s, b in room.held.items() if s > upto}
        for member in list(room.members.values()):
            if member.ready:
                room.send_to(member, b"room:resync", dumps({"reason": "node_behind"}))

    async def _sweep(self) -> None:
        """Safety net: repair streams with waiting events and catch up rooms that stayed behind."""
        behind: dict[str, int] = {}
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            try:
                rooms = list(self.rooms.values())
                if not rooms or not self.bus.connected:
                    continue
                store = self.streams
                async with self.core.redis.pipeline(transaction=False) as pipe:
                    for room in rooms:
                        pipe.hget(store.meta_key(room.name), "last")
                        pipe.hkeys(self.core.keys("live", "p", room.name))
                    replies = await pipe.execute()
                for i, room in enumerate(rooms):
                    last, pending = replies[2 * i], replies[2 * i + 1]
                    if pending:
                        await repair(self.core, room.name, max(int(p) for p in pending))
                    if last is not None and int(last) > room.last_seq:
                        if behind.get(room.name) == int(last):  # still behind since the last sweep
                            await self.fill(room, int(last))
                        behind[room.name] = int(last)
                    else:
                        behind.pop(room.name, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live sweep failed")
