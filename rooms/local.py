"""This node's share of the live rooms: connections, members, in-order fan-out.

Guarantees (per node, per room):
- `LocalRoom.offer(seq, body)` delivers durable room events to local members exactly once and
  in seq order: duplicates (seq <= last delivered) are dropped, early arrivals are held back
  until the missing seqs arrive or are fetched (`on_gap` is called after a short delay).
- Each event is encoded once per node: the Socket.IO packet and its WebSocket frame are built
  once and the same bytes are written to every member. Events that arrive in the same loop
  iteration, or within `live_fanout_min_interval_ms` of the previous write, are coalesced into
  one write per member (a write is a syscall per member: the dominant cost of fan-out). A room
  with more than FLUSH_CHUNK members on this node is written in chunks over several loop
  passes; batches still reach each member whole and in order.
- A member that is joining (`ready` False) buffers events until its join ack has been written,
  then receives exactly the events after its ack's `seq`: live events never overtake the ack
  and are never duplicated with its history.
- Ephemeral events (presence) carry the last seq this node delivered in the room, so a client
  may always treat the highest `seq` it has seen as its replay position.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from domain.identity import Principal
from server.realtime import DirectWriter, QueueWriter, ws_frame

log = logging.getLogger("foyer.rooms")

Writer = DirectWriter | QueueWriter
FLUSH_CHUNK = 2048  # members written per loop pass (~23 ms of send syscalls on the reference machine)
Batch = list[tuple[int | None, bytes, bytes]]  # (seq or None for ephemeral, ws frame, b"4"+packet)


def event_json(room_json: bytes, seq: int, data: bytes) -> bytes:
    """A room event's payload `{"room":..,"seq":..,<data fields>}` from its stored data JSON."""
    head = b'{"room":' + room_json + b',"seq":' + str(seq).encode()
    if len(data) <= 2:  # b"{}"
        return head + b"}"
    return head + b"," + data[1:]


def build_packet(room_json: bytes, seq: int, event: bytes, data: bytes) -> bytes:
    """The engine.io message `42/live,["<event>",{"room":..,"seq":..,<data fields>}]`."""
    return b'42/live,["' + event + b'",' + event_json(room_json, seq, data) + b"]"


class Conn:
    """One authenticated Socket.IO connection on this node."""

    __slots__ = ("sid", "principal", "user_id", "name", "members", "writer")

    def __init__(self, sid: str, principal: Principal) -> None:
        self.sid = sid
        self.principal = principal
        self.user_id = principal.user_id
        self.name: str | None = None
        self.members: dict[str, Member] = {}
        self.writer: Writer | None = None


class Member:
    """A connection's membership of one room."""

    __slots__ = ("conn", "room", "ready", "min_seq", "buffer", "can_moderate")

    def __init__(self, conn: Conn, room: LocalRoom, *, can_moderate: bool) -> None:
        self.conn = conn
        self.room = room
        self.ready = False
        self.min_seq = 0
        self.buffer: Batch = []
        self.can_moderate = can_moderate


class LocalRoom:
    """A room with at least one member on this node (or lingering before unsubscribe)."""

    def __init__(self, name: str, *, event_id: uuid.UUID | None, gap_delay: float, flush_interval: float = 0.0,
                 on_gap: Callable[[LocalRoom], None], on_control: Callable[[LocalRoom, bytes, bytes], None]) -> None:
        self.name = name
        self.room_json = orjson.dumps(name)
        self.event_id = event_id
        self.gap_delay = gap_delay
        self.members: dict[str, Member] = {}
        self.users: dict[uuid.UUID, int] = {}  # user -> local connection count
        self.user_names: dict[uuid.UUID, str] = {}
        self.last_seq = 0
        self.slow_mode_seconds = 0
        self.held: dict[int, bytes] = {}
        self.batch: Batch = []
        self.flush_interval = flush_interval
        self.last_flush = 0.0
        self.flush_handle: asyncio.Handle | None = None
        self.writing: asyncio.Handle | None = None  # the rest of a large room's batch, next pass
        self.gap_handle: asyncio.TimerHandle | None = None
        self.ready: asyncio.Future[None] | None = None  # subscribed and baseline known
        self.confirmed = False  # the channel subscription was confirmed at least once
        self.linger: asyncio.TimerHandle | None = None
        self.presence_dirty = False
        self.joined: dict[uuid.UUID, str] = {}
        self.left: set[uuid.UUID] = set()
        self.delivered = 0  # events delivered to members (metrics)
        self.snapshot_cache: tuple[float, dict[str, Any]] | None = None  # (loop time, join ack part)
        self.presence_cache: tuple[float, dict[str, Any]] | None = None
        self._on_gap = on_gap
        self._on_control = on_control

    # --- membership ---------------------------------------------------------------------------

    def add(self, member: Member) -> None:
        self.members[member.conn.sid] = member
        uid = member.conn.user_id
        n = self.users.get(uid, 0)
        self.users[uid] = n + 1
        if n == 0:
            self.user_names[uid] = member.conn.name or ""
            self.left.discard(uid)
            self.joined[uid] = member.conn.name or ""
            self.presence_dirty = True

    def remove(self, sid: str) -> Member | None:
        member = self.members.pop(sid, None)
        if member is None:
            return None
        uid = member.conn.user_id
        n = self.users.get(uid, 0) - 1
        if n <= 0:
            self.users.pop(uid, None)
            self.user_names.pop(uid, None)
            if self.joined.pop(uid, None) is None:
                self.left.add(uid)
            self.presence_dirty = True
        else:
            self.users[uid] = n
        return member

    # --- durable events, in order ----------------------------------------------------------------

    def offer(self, seq: int, body: bytes) -> None:
        """Deliver durable event `seq` (body = event \\n data-json) in order, exactly once."""
        last = self.last_seq
        if seq <= last:
            return
        if seq != last + 1:
            self.held[seq] = body
            if self.gap_handle is None:
                self.gap_handle = asyncio.get_running_loop().call_later(self.gap_delay, self._gap_due)
            return
        self._emit(seq, body)
        held = self.held
        while held:
            nxt = held.pop(self.last_seq + 1, None)
            if nxt is None:
                break
            self._emit(self.last_seq + 1, nxt)
        if not held and self.gap_handle is not None:
            self.gap_handle.cancel()
            self.gap_handle = None

    def schedule_gap_check(self, delay: float) -> None:
        if self.gap_handle is not None:
            self.gap_handle.cancel()
        self.gap_handle = asyncio.get_running_loop().call_later(delay, self._gap_due)

    def _gap_due(self) -> None:
        self.gap_handle = None
        if self.held:
            self._on_gap(self)

    def _emit(self, seq: int, body: bytes) -> None:
        event, _, data = body.partition(b"\n")
        self.last_seq = seq
        packet = build_packet(self.room_json, seq, event, data)
        self._queue(seq, packet)
        if event in CONTROL_EVENTS:
            self._on_control(self, event, data)

    def emit_ephemeral(self, event: bytes, data: bytes) -> None:
        """Send a non-durable event to ready members (not replayed; seq = last delivered)."""
        self._queue(None, build_packet(self.room_json, self.last_seq, event, data))

    def _queue(self, seq: int | None, packet: bytes) -> None:
        self.batch.append((seq, ws_frame(packet), packet))
        if self.flush_handle is None and self.writing is None:
            loop = asyncio.get_running_loop()
            wait = self.last_flush + self.flush_interval - loop.time()
            # one write (one syscall) per member per flush: under a high event rate, events that
            # arrive within `flush_interval` of the previous flush share the next one
            self.flush_handle = loop.call_soon(self.flush) if wait <= 0 else loop.call_later(wait, self.flush)

    def flush(self) -> None:
        """Write the pending batch to every member: one write per member per flush.

        A room with more than FLUSH_CHUNK members on this node is written FLUSH_CHUNK members per
        loop pass (a write is a syscall: ~115 ms for 10,000 members in one go), and the next
        batch waits until this one has reached every member, so each member still gets the
        batches whole and in order. A member that leaves meanwhile is skipped; one that joins
        meanwhile has these events in its join ack's history already."""
        self.flush_handle = None
        if self.writing is not None:
            return  # the previous batch is still being written; `_write` flushes again when done
        self.last_flush = asyncio.get_running_loop().time()
        batch = self.batch
        if not batch:
            return
        self.batch = []
        blob = batch[0][1] if len(batch) == 1 else b"".join(f for _, f, _ in batch)
        self._write(list(self.members.values()), 0, blob, batch)

    def _write(self, members: list[Member], start: int, blob: bytes, batch: Batch) -> None:
        end = min(start + FLUSH_CHUNK, len(members))
        first = batch[0][0]
        current = self.members
        dead: list[Member] = []
        for i in range(start, end):
            member = members[i]
            if current.get(member.conn.sid) is not member:
                continue  # left the room since the batch started
            if not member.ready:
                member.buffer.extend(b for b in batch if b[0] is not None)
                continue
            writer = member.conn.writer
            if writer is None:
                continue
            if first is not None and first > member.min_seq and (len(batch) == 1 or _all_after(batch, member.min_seq)):
                ok = writer.write_packets(blob, batch)  # the common case: everything, as one write
            else:
                ok = _write_filtered(writer, batch, member.min_seq)
            if not ok:
                dead.append(member)
        for member in dead:  # the connection is gone (its disconnect hook finds nothing left to do)
            self.remove(member.conn.sid)
            member.conn.members.pop(self.name, None)
        loop = asyncio.get_running_loop()
        if end < len(members):
            self.writing = loop.call_soon(self._write, members, end, blob, batch)
            return
        self.writing = None
        self.delivered += len(batch) * len(members)
        if self.batch and self.flush_handle is None:
            self.flush_handle = loop.call_soon(self.flush)

    def make_ready(self, member: Member, min_seq: int) -> None:
        """After the join ack is written: send what was buffered after `min_seq`, then go live."""
        member.min_seq = min_seq
        member.ready = True
        buffered, member.buffer = member.buffer, []
        writer = member.conn.writer
        if buffered and writer is not None:
            _write_filtered(writer, buffered, min_seq)

    def send_to(self, member: Member, event: bytes, data: bytes) -> None:
        """A non-durable event for one member only (e.g. `room:kicked`)."""
        writer = member.conn.writer
        if writer is not None:
            packet = build_packet(self.room_json, max(self.last_seq, member.min_seq), event, data)
            writer.write_packets(ws_frame(packet), [(None, b"", packet)])  # type: ignore[list-item]


def _all_after(batch: Batch, min_seq: int) -> bool:
    return all(s is None or s > min_seq for s, _, _ in batch)


def _write_filtered(writer: Writer, batch: Batch, min_seq: int) -> bool:
    keep = [b for b in batch if b[0] is None or b[0] > min_seq]
    if not keep:
        return True
    return writer.write_packets(b"".join(f for _, f, _ in keep), keep)


# Durable events that also change node state (slow mode, bans): see Live.on_control.
CONTROL_EVENTS = frozenset({b"room:slow_mode", b"mod:banned"})


def decode_data(data: bytes) -> dict[str, Any]:
    return orjson.loads(data)
