"""Group commit of chat messages, per room and node.

A room's seq counter is one PostgreSQL row, locked from the moment a seq is taken until
commit. One transaction per message would cap a room at 1 / (lock hold) messages per second —
and a commit can be slow when PostgreSQL is busy. So `chat:send` hands its (already validated)
message to the room's batcher: while one batch is being committed, new messages queue, and the
next transaction commits all of them (up to `MAX_BATCH`) with one counter update. Under light
load a batch is one message (no added latency); under heavy load batches grow and throughput
follows.

Guarantees per message: acked `{ok, id, seq}` only after its transaction committed (durable);
the message row, its `message.posted` outbox row and its `chat:message` room event commit
together; a (user, client_id) that already exists — a retry racing its original — is answered
with the original's id and seq, never posted twice; a failed transaction fails every message of
the batch with the same error (clients retry with the same client_id).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rooms.broadcast import RoomEvent, deliver, dumps
from storage import chat as chat_store
from storage import outbox
from storage import rooms as room_store

if TYPE_CHECKING:
    from domain.services import Core
    from rooms.local import LocalRoom

log = logging.getLogger("foyer.rooms.chat")

MAX_BATCH = 200


@dataclass(slots=True)
class PendingMessage:
    message: chat_store.NewMessage
    payload: dict[str, Any]  # chat:message data (without room/seq)
    future: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SendBatcher:
    """One per node; keeps a queue and at most one committing transaction per room."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.queues: dict[str, list[PendingMessage]] = {}
        self.batches = 0
        self.messages = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, room: LocalRoom, item: PendingMessage) -> asyncio.Future[dict[str, Any]]:
        queue = self.queues.get(room.name)
        if queue is None:
            self.queues[room.name] = [item]
            task = asyncio.get_running_loop().create_task(self._drain(room))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            queue.append(item)
        return item.future

    async def _drain(self, room: LocalRoom) -> None:
        try:
            while True:
                queue = self.queues.get(room.name)
                if not queue:
                    break
                batch, rest = queue[:MAX_BATCH], queue[MAX_BATCH:]
                self.queues[room.name] = rest
                await self._commit(room, batch)
        finally:
            queue = self.queues.pop(room.name, [])
            for item in queue:  # only on cancellation (shutdown)
                if not item.future.done():
                    item.future.set_exception(asyncio.CancelledError())

    async def _commit(self, room: LocalRoom, batch: list[PendingMessage]) -> None:
        core = self.core
        try:
            async with core.db.transaction("chat.send") as tx:
                inserted = await chat_store.insert_messages(tx, room.name, [p.message for p in batch])
                fresh = [p for p in batch if p.message.id in inserted]
                for p in fresh:
                    m = p.message
                    await outbox.append(tx, type="message.posted", event_id=room.event_id, notify=False, data={
                        "message_id": str(m.id), "room": room.name, "user_id": str(m.user_id),
                        "reply_to": str(m.reply_to) if m.reply_to else None, "length": len(m.text)})
                events: list[RoomEvent] = []
                if fresh:
                    datas = [dumps(p.payload) for p in fresh]
                    first = await room_store.append_events(tx, room=room.name, event_id=room.event_id, events=[
                        ("chat:message", d.decode(), p.message.user_id, p.message.id) for p, d in zip(fresh, datas, strict=True)])
                    events = [RoomEvent(room.name, first + i, "chat:message", d, True) for i, d in enumerate(datas)]
        except Exception as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        self.batches += 1
        self.messages += len(fresh)
        await deliver(core, *events)
        for p, ev in zip(fresh, events, strict=True):
            p.future.set_result({"ok": True, "id": str(p.message.id), "seq": ev.seq})
        for p in batch:
            if p.message.id not in inserted:  # a retry raced its original: answer with the original
                dup = await chat_store.find_by_client_id(core.db, room.name, p.message.user_id, p.message.client_id)
                if dup is None:
                    p.future.set_exception(RuntimeError("message neither inserted nor found"))
                else:
                    p.future.set_result({"ok": True, "id": str(dup[0]), "seq": dup[1], "duplicate": True})

