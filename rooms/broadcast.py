"""The one emit path for room events: durable, sequenced, replayable, fanned out to every node.

Use from any capability (HTTP handlers after commit, outbox consumers, socket handlers):

    # its own transaction:
    await publish(core, room=f"event:{event_id}", event="schedule:changed", data={...})

    # or as part of your own transaction (call `stage` LAST: it holds the room's counter lock
    # until commit), then deliver after commit:
    async with core.db.transaction("qa.ask") as conn:
        ...your writes...
        ev = await stage(conn, room=f"session:{sid}", event="qa:question", data={...})
    await deliver(core, ev)

Guarantees:
- `stage` assigns the room's next `seq` (gapless, per room, commit order = seq order) and
  writes the event to `room_events` in the caller's transaction: once committed it is durable
  and will be delivered, even if `deliver` is never called (nodes fill gaps from PostgreSQL).
- `deliver` appends to the room's Redis replay stream and publishes to the room channel in seq
  order (storage/rooms.py); every node with members in the room writes it to each of them
  once, in order. Clients receive `<event>` with payload `{room, seq, ...data}`.
- `dedupe_key` (e.g. an outbox event id) makes a retried producer idempotent.
- `data` must be JSON-serializable (orjson: UUIDs, datetimes, dataclasses ok) and must not
  contain the keys `room` or `seq`. Keep payloads small (they are replayed from the stream).

`publish_ephemeral` is for state that need not be replayed (typing indicators, coalesced
tallies whose latest value is in the join snapshot): not durable, carries the node's last seq.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from domain.services import Core
from handlers.api import _json_default
from rooms.names import check_event_name, event_id_of, parse_room
from storage import rooms as room_store
from storage.rooms import WAITING, StreamStore, encode_body

log = logging.getLogger("foyer.rooms.broadcast")

_streams: weakref.WeakKeyDictionary[Any, StreamStore] = weakref.WeakKeyDictionary()
_repairs: set[asyncio.Task[None]] = set()


@dataclass(frozen=True, slots=True)
class RoomEvent:
    room: str
    seq: int
    event: str
    data_json: bytes
    created: bool  # False: `dedupe_key` was seen before; seq is the first event's

    @property
    def body(self) -> bytes:
        return encode_body(self.event, self.data_json)


def streams_of(core: Core) -> StreamStore:
    store = _streams.get(core.redis)
    if store is None:
        live = core.settings.live
        store = StreamStore(core.redis, core.keys, maxlen=live.live_stream_maxlen,
                            ttl_seconds=live.live_stream_ttl_seconds)
        _streams[core.redis] = store
    return store


def dumps(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


async def stage(conn: asyncpg.Connection, *, room: str, event: str, data: dict[str, Any],
                actor_id: uuid.UUID | None = None, dedupe_key: str | None = None,
                message_id: uuid.UUID | None = None) -> RoomEvent:
    """Assign a seq and record the event in the caller's transaction (call it last).
    `message_id`: a chat message of this transaction that takes the event's seq."""
    rn = parse_room(room)
    check_event_name(event)
    if "room" in data or "seq" in data:
        raise ValueError("room event data must not contain 'room' or 'seq'")
    data_json = dumps(data)
    event_id = await event_id_of(conn, rn)
    seq, created = await room_store.append_event(
        conn, room=rn.name, event_id=event_id, event=event, data=orjson.loads(data_json),
        actor_id=actor_id, dedupe_key=dedupe_key, message_id=message_id,
    )
    return RoomEvent(rn.name, seq, event, data_json, created)


async def deliver(core: Core, *events: RoomEvent) -> None:
    """After commit: append to the replay stream and publish. Never raises (logged instead):
    the events are durable, and nodes fetch what they miss from PostgreSQL."""
    store = streams_of(core)
    for ev in events:
        if not ev.created:
            continue
        try:
            status, _ = await store.append(ev.room, ev.seq, ev.body)
        except Exception:
            log.exception("could not append %s #%d to its stream; nodes will fetch it from PostgreSQL",
                          ev.room, ev.seq)
            continue
        if status == WAITING:
            _spawn_repair(core, ev.room, ev.seq)


async def publish(core: Core, *, room: str, event: str, data: dict[str, Any],
                  actor_id: uuid.UUID | None = None, dedupe_key: str | None = None) -> RoomEvent:
    """Stage in a transaction of its own, then deliver. Returns the event (with its seq)."""
    async with core.db.transaction("room.publish") as conn:
        ev = await stage(conn, room=room, event=event, data=data, actor_id=actor_id, dedupe_key=dedupe_key)
    await deliver(core, ev)
    return ev


async def publish_ephemeral(core: Core, *, room: str, event: str, data: dict[str, Any]) -> None:
    """Fan out a non-durable event to the room's members on every node (not replayed)."""
    rn = parse_room(room)
    check_event_name(event)
    await core.redis.publish(streams_of(core).channel(rn.name), b"e\n" + encode_body(event, dumps(data)))


def _spawn_repair(core: Core, room: str, upto: int) -> None:
    task = asyncio.get_running_loop().create_task(_repair_later(core, room, upto))
    _repairs.add(task)
    task.add_done_callback(_repairs.discard)


async def _repair_later(core: Core, room: str, upto: int) -> None:
    await asyncio.sleep(core.settings.live.live_gap_repair_seconds)
    try:
        await repair(core, room, upto)
    except Exception:
        log.exception("stream repair of %s failed", room)


async def repair(core: Core, room: str, upto: int) -> int:
    """Append the committed events the stream lacks up to `upto` (an event waited behind a seq
    whose node died between commit and append). Idempotent; returns how many were appended."""
    store = streams_of(core)
    meta = await store.meta(room)
    if meta is not None and meta.last >= upto:
        return 0
    after = meta.last if meta is not None else upto - 1
    rows = await room_store.load_events(core.db, room, after=after, before=upto + 1, limit=10_000)
    for seq, event, data in rows:
        await store.append(room, seq, encode_body(event, dumps(data)))
    if rows:
        log.warning("repaired stream of %s: appended %d event(s) up to #%d", room, len(rows), upto)
    return len(rows)
