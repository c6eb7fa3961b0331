"""A lean Redis pub/sub subscriber (RESP2 over one asyncio connection) for the live-room bus.

Why not redis-py's PubSub: it reads each message in a task through a retry/observability layer
and silently re-subscribes after a reconnect. This subscriber parses pushes in
`data_received` and hands them to a callback synchronously (no task per message), and it
never reconnects by itself: the owner (rooms/bus.py) decides, re-subscribes, and catches up on
what it may have missed. A lost connection is reported through `closed` (a future).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

OnMessage = Callable[[bytes, bytes], None]
OnSubscribed = Callable[[bytes], None]


class RespError(Exception):
    pass


def _encode(*parts: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Parser:
    """Incremental RESP2 parser for what a subscriber receives: simple strings, errors,
    integers, bulk strings and (flat) arrays of those."""

    __slots__ = ("buf", "pos")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def feed(self, data: bytes) -> None:
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data

    def _line(self, start: int) -> tuple[bytes, int] | None:
        end = self.buf.find(b"\r\n", start)
        if end < 0:
            return None
        return bytes(self.buf[start:end]), end + 2

    def _item(self, start: int) -> tuple[object, int] | None:
        if start >= len(self.buf):
            return None
        kind = self.buf[start]
        line = self._line(start + 1)
        if line is None:
            return None
        head, nxt = line
        if kind == 0x24:  # $ bulk
            n = int(head)
            if n < 0:
                return None, nxt
            if len(self.buf) < nxt + n + 2:
                return None
            return bytes(self.buf[nxt:nxt + n]), nxt + n + 2
        if kind == 0x3A:  # : integer
            return int(head), nxt
        if kind == 0x2B:  # + simple string
            return head, nxt
        if kind == 0x2D:  # - error
            return RespError(head.decode(errors="replace")), nxt
        if kind == 0x2A:  # * array
            n = int(head)
            items = []
            pos = nxt
            for _ in range(max(n, 0)):
                got = self._item(pos)
                if got is None:
                    return None
                item, pos = got
                items.append(item)
            return items, pos
        raise RespError(f"unexpected RESP type byte {kind!r}")

    def next(self) -> tuple[bool, object]:
        got = self._item(self.pos)
        if got is None:
            return False, None
        item, self.pos = got
        return True, item


class _Protocol(asyncio.Protocol):
    def __init__(self, sub: RedisSubscriber) -> None:
        self.sub = sub
        self.parser = _Parser()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        parser.feed(data)
        sub = self.sub
        while True:
            ok, item = parser.next()
            if not ok:
                return
            sub._dispatch(item)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sub._lost(exc)


class RedisSubscriber:
    """One subscribed connection. `await connect()`, `subscribe(*channels)`, `closed` ends it."""

    def __init__(self, url: str, *, on_message: OnMessage, on_subscribed: OnSubscribed,
                 name: str = "foyer-bus", connect_timeout: float = 5.0) -> None:
        self.url = url
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.name = name
        self.connect_timeout = connect_timeout
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self._replies: list[asyncio.Future[object]] = []
        self._subscribed_mode = False

    async def connect(self) -> None:
        parts = urlsplit(self.url)
        loop = asyncio.get_running_loop()
        ctx = ssl.create_default_context() if parts.scheme == "rediss" else None
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), parts.hostname or "127.0.0.1", parts.port or 6379,
                                   ssl=ctx),
            self.connect_timeout,
        )
        self.transport = transport  # type: ignore[assignment]
        password = unquote(parts.password) if parts.password else None
        username = unquote(parts.username) if parts.username else None
        if password is not None:
            await self._command(*(("AUTH", username, password) if username else ("AUTH", password)))
        db = (parts.path or "/").lstrip("/")
        if db and db != "0":
            await self._command("SELECT", db)
        await self._command("CLIENT", "SETNAME", self.name.replace(" ", "_"))

    async def _command(self, *parts: str) -> object:
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._replies.append(fut)
        assert self.transport is not None
        self.transport.write(_encode(*parts))
        reply = await asyncio.wait_for(fut, self.connect_timeout)
        if isinstance(reply, RespError):
            raise reply
        return reply

    def subscribe(self, *channels: bytes) -> None:
        """Send SUBSCRIBE; each confirmation calls `on_subscribed(channel)`."""
        if channels and self.transport is not None and not self.transport.is_closing():
            self._subscribed_mode = True
            self.transport.write(_encode(b"SUBSCRIBE", *channels))

    def unsubscribe(self, *channels: bytes) -> None:
        if channels and self.transport is not None and not self.transport.is_closing():
            self.transport.write(_encode(b"UNSUBSCRIBE", *channels))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if not self.closed.done():
            self.closed.set_result(None)

    def _dispatch(self, item: object) -> None:
        if isinstance(item, list) and len(item) >= 3 and isinstance(item[0], bytes):
            kind = item[0]
            if kind == b"message":
                self.on_message(item[1], item[2])  # type: ignore[arg-type]
                return
            if kind == b"subscribe":
                self.on_subscribed(item[1])  # type: ignore[arg-type]
                return
            if kind == b"unsubscribe":
                return
        if self._replies:
            fut = self._replies.pop(0)
            if not fut.done():
                fut.set_result(item)

    def _lost(self, exc: Exception | None) -> None:
        for fut in self._replies:
            if not fut.done():
                fut.set_exception(ConnectionError("redis subscriber connection lost"))
        self._replies.clear()
        if not self.closed.done():
            self.closed.set_result(exc)
