"""A lean Socket.IO client for load generation: raw asyncio Protocol speaking WebSocket +
Engine.IO 4 + Socket.IO 5 wire format, many connections per process, no task per connection.

Only what the benchmarks need: connect to a namespace with an auth payload, emit with ack,
receive events (parsed lazily: `chat:message` timestamps/seq/step by regex, the rest ignored),
answer engine.io pings, reconnect is left to the caller. Client frames use an all-zero mask key
(valid framing; fine for a loopback benchmark, not for the open internet).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import struct
import time
from collections.abc import Callable
from typing import Any

import orjson

_TS = re.compile(rb'"ts":(\d+)')
_SEQ = re.compile(rb'"seq":(\d+)')
_STEP = re.compile(rb'"text":"s(\d+)\|')
_MASK = b"\x00\x00\x00\x00"
_LEN2 = struct.Struct("!BBH")
_LEN3 = struct.Struct("!BBQ")


def frame(payload: bytes) -> bytes:
    """A masked (zero key) text frame from client to server."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = _LEN2.pack(0x81, 0x80 | 126, n)
    else:
        head = _LEN3.pack(0x81, 0x80 | 127, n)
    return head + _MASK + payload


class Stats:
    """Per-process delivery statistics, by step label (the `s<step>|` prefix of the text)."""

    def __init__(self) -> None:
        self.received: dict[int, int] = {}
        self.replayed: dict[int, int] = {}
        self.latency: dict[int, list[float]] = {}
        self.acked: dict[int, int] = {}
        self.failed: dict[int, int] = {}

    def on_message(self, payload: bytes, now_ms: float) -> tuple[int | None, int | None]:
        m = _STEP.search(payload)
        step = int(m.group(1)) if m else -1
        t = _TS.search(payload)
        self.received[step] = self.received.get(step, 0) + 1
        if t:
            self.latency.setdefault(step, []).append(now_ms - int(t.group(1)))
        s = _SEQ.search(payload)
        return step, int(s.group(1)) if s else None


class Conn(asyncio.Protocol):
    """One Socket.IO client connection (WebSocket transport only)."""

    def __init__(self, *, host: str, port: int, namespace: str, auth: dict[str, Any] | None, stats: Stats,
                 on_ready: Callable[[Conn], None], on_lost: Callable[[Conn], None] | None = None,
                 track_seq: bool = False) -> None:
        self.host, self.port = host, port
        self.namespace = namespace.encode()
        self.auth = auth
        self.stats = stats
        self.on_ready = on_ready
        self.on_lost = on_lost
        self.track_seq = track_seq
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.ready = False
        self.closed = False
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.ack_hooks: dict[int, Callable[[Any], None]] = {}
        self.next_id = 0
        # replay bookkeeping (Foyer): highest seq seen, gaps and duplicates
        self.last_seq = 0
        self.first_seq = 0
        self.epoch: str | None = None
        self.gaps = 0
        self.dups = 0
        self.live = 0

    # --- transport ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n")
        transport.write(req.encode())  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ready = False
        for fut in self.acks.values():
            if not fut.done():
                fut.set_exception(ConnectionError("lost"))
        self.acks.clear()
        if self.on_lost is not None:
            self.on_lost(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(bytes(buf[:200]).decode(errors="replace"))
            del buf[: end + 4]
            self.upgraded = True
        now_ms = time.time() * 1000.0
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            hl = 2
            if b1 == 126:
                if n - pos < 4:
                    break
                b1 = (buf[pos + 2] << 8) | buf[pos + 3]
                hl = 4
            elif b1 == 127:
                if n - pos < 10:
                    break
                b1 = int.from_bytes(buf[pos + 2:pos + 10], "big")
                hl = 10
            if n - pos < hl + b1:
                break
            opcode = buf[pos] & 0x0F
            payload = bytes(buf[pos + hl:pos + hl + b1])
            pos += hl + b1
            if opcode == 1:
                self._packet(payload, now_ms)
            elif opcode == 8:
                self.close()
                return
            elif opcode == 9 and self.transport is not None:
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + _MASK + payload)
        if pos:
            del buf[:pos]

    # --- engine.io / socket.io ------------------------------------------------------------------

    def send(self, text: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame(text))

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(bytes((0x88, 0x82)) + _MASK + b"\x03\xe8")
            self.transport.close()

    def _packet(self, p: bytes, now_ms: float) -> None:
        kind = p[:1]
        if kind == b"4":
            t = p[1:2]
            if t == b"2":
                self._event(p, now_ms)
            elif t == b"3":
                body = p[2:]
                if body.startswith(b"/"):
                    body = body[body.index(b",") + 1:]
                i = 0
                while i < len(body) and 48 <= body[i] <= 57:
                    i += 1
                ack_id = int(body[:i])
                fut = self.acks.pop(ack_id, None)
                if fut is not None and not fut.done():
                    result = orjson.loads(body[i:])[0]
                    hook = self.ack_hooks.pop(ack_id, None)
                    if hook is not None:  # runs before any later frame of this read is handled
                        hook(result)
                    fut.set_result(result)
            elif t == b"0":
                self.ready = True
                self.on_ready(self)
            elif t == b"4":
                raise ConnectionError(f"connect_error: {p!r}")
        elif kind == b"2":
            self.send(b"3")
        elif kind == b"0":
            auth = orjson.dumps(self.auth) if self.auth is not None else b""
            ns = self.namespace + b"," if self.namespace != b"/" else b""
            self.send(b"40" + ns + auth)

    def _event(self, p: bytes, now_ms: float) -> None:
        if b'["chat:message"' not in p[:40]:
            return
        step, seq = self.stats.on_message(p, now_ms)
        self.live += 1
        if self.track_seq and seq is not None:
            self.see(seq)

    def see(self, seq: int) -> None:
        if self.last_seq == 0:
            self.first_seq = seq
        elif seq <= self.last_seq:
            self.dups += 1
            return
        elif seq != self.last_seq + 1:
            self.gaps += seq - self.last_seq - 1
        self.last_seq = seq

    def emit(self, event: str, data: Any, *, on_ack: Callable[[Any], None] | None = None) -> asyncio.Future[Any]:
        """Emit with an ack; `on_ack` runs synchronously when the ack is read, before the events
        that follow it on the wire (e.g. to apply a join's history before live events)."""
        self.next_id += 1
        if on_ack is not None:
            self.ack_hooks[self.next_id] = on_ack
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks[self.next_id] = fut
        ns = self.namespace + b"," if self.namespace != b"/" else b""
        self.send(b"42" + ns + str(self.next_id).encode() + orjson.dumps([event, data]))
        return fut


async def open_conn(host: str, port: int, *, ready_timeout: float = 30.0, **kw: Any) -> Conn:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[Conn] = loop.create_future()

    def on_ready(c: Conn) -> None:
        if not ready.done():
            ready.set_result(c)

    conn: Conn | None = None

    def factory() -> Conn:
        nonlocal conn
        conn = Conn(host=host, port=port, on_ready=on_ready, **kw)
        return conn

    await loop.create_connection(factory, host, port)
    return await asyncio.wait_for(ready, ready_timeout)
