"""rooms/local.py fan-out to a big room: written in chunks over loop passes, still whole and in order."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

import rooms.local as local
from domain.identity import Principal
from rooms.local import Conn, LocalRoom, Member


class RecordingWriter:
    """Stands in for a client's socket writer: keeps the seqs of the events written to it."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.writes = 0

    def write_packets(self, frames: bytes, batch: list) -> bool:
        self.writes += 1
        for _seq, _frame, packet in batch:
            payload = json.loads(packet[len(b"42/live,"):])
            self.seqs.append(payload[1]["seq"])
        return True


def _room() -> LocalRoom:
    return LocalRoom("session:x", event_id=None, gap_delay=1.0, on_gap=lambda r: None, on_control=lambda *a: None)


def _member(room: LocalRoom, *, ready: bool = True) -> tuple[Member, RecordingWriter]:
    conn = Conn(uuid.uuid4().hex, Principal(user_id=uuid.uuid4()))
    writer = RecordingWriter()
    conn.writer = writer  # type: ignore[assignment]
    member = Member(conn, room, can_moderate=False)
    member.ready = ready
    conn.members[room.name] = member
    room.add(member)
    return member, writer


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(local, "FLUSH_CHUNK", 3)


async def test_a_big_room_is_written_a_chunk_per_pass_and_every_member_gets_every_event_in_order(small_chunks):
    room = _room()
    members = [_member(room) for _ in range(10)]
    room.offer(1, b'chat:message\n{"text":"a"}')
    await asyncio.sleep(0)  # the flush runs: the first chunk only
    assert sum(w.writes for _, w in members) == 3
    room.offer(2, b'chat:message\n{"text":"b"}')  # arrives while seq 1 is still being written
    room.offer(3, b'chat:message\n{"text":"c"}')
    await _settle()
    for _, w in members:
        assert w.seqs == [1, 2, 3]
        assert w.writes == 2  # seq 1 alone, then 2 and 3 together (they waited for seq 1's write)
    assert room.writing is None and room.batch == []
    assert room.delivered == 3 * 10


async def test_members_leaving_or_joining_during_a_chunked_write(small_chunks):
    room = _room()
    members = [_member(room) for _ in range(9)]
    room.offer(1, b'chat:message\n{"text":"a"}')
    await asyncio.sleep(0)  # members 0-2 written
    gone, gone_writer = members[7]
    room.remove(gone.conn.sid)  # leaves before its chunk
    newcomer, new_writer = _member(room, ready=False)  # joins mid-write: seq 1 is in its ack's history
    await _settle()
    assert gone_writer.seqs == []
    assert new_writer.seqs == [] and newcomer.buffer == []
    room.offer(2, b'chat:message\n{"text":"b"}')
    await _settle()
    assert [s for s, _, _ in newcomer.buffer] == [2]  # buffered until its join ack is written
    room.make_ready(newcomer, 1)
    assert new_writer.seqs == [2]
    for i, (_, w) in enumerate(members):
        assert w.seqs == ([] if i == 7 else [1, 2])


async def test_a_small_room_is_written_in_one_pass():
    room = _room()
    members = [_member(room) for _ in range(50)]
    room.offer(1, b'chat:message\n{"text":"a"}')
    await asyncio.sleep(0)
    assert all(w.seqs == [1] for _, w in members) and room.writing is None


async def test_a_new_batch_never_overtakes_the_one_being_written(monkeypatch):
    """If the next batch started at once, members leaving would shift it ahead of the previous
    one for the members at the end of the list: it must wait for the previous write."""
    monkeypatch.setattr(local, "FLUSH_CHUNK", 2)
    room = _room()
    members = [_member(room) for _ in range(6)]
    room.offer(1, b'chat:message\n{"text":"a"}')
    await asyncio.sleep(0)  # members 0 and 1 have seq 1
    for member, _ in members[:4]:
        room.remove(member.conn.sid)
    room.offer(2, b'chat:message\n{"text":"b"}')
    await _settle()
    for _, w in members[4:]:
        assert w.seqs == [1, 2]
