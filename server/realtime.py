"""The Socket.IO server: namespace `/live`, JWT auth on connect, a direct WebSocket write path.

Wiring only. The rules and `on_<event>` bindings live in `rooms/` (`rooms.setup`), which is the
only code that emits. This module guarantees:
- a connection without a valid access token in the auth payload (`{"token": "<JWT>"}`) is
  refused; the client's `connect_error` carries `{"message", "data": {"code", "message"}}` with
  code `unauthorized`, `invalid_token` or `token_expired`;
- the principal is stored in the Socket.IO session (`await sio.get_session(sid)["principal"]`)
  and handed to every registered connect hook (`ConnectHooks`);
- python-socketio's wire protocol is unchanged (standard clients work, polling included), but:
  * a connection opened directly over WebSocket (`transports: ["websocket"]`) gets a
    `DirectWriter`: every packet for it, Socket.IO acks and room fan-out alike, is written to
    its TCP transport synchronously and in order, without engine.io's per-socket queue and
    writer task; a client whose unsent bytes exceed `live_max_send_buffer_bytes` is cut off
    (it reconnects and replays from its `last_seq`);
  * permessage-deflate is off (it costs ~100 KiB of zlib state per connection);
  * `FoyerManager` keeps a reverse index sid → rooms, so a disconnect costs O(rooms of that
    client), not O(all rooms) — python-socketio's `basic_disconnect` copies every room on each
    disconnect, which makes a mass disconnect O(N²);
  * an event handler may return `AfterAck(value, callback)`: the ack is written first, then the
    callback runs, before any other packet is written to that client (used by `room:join` so
    live events never overtake the join ack).
Cross-node delivery is `rooms/bus.py` (per-room Redis channels), not a Socket.IO client manager.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

import socketio
from aiohttp import WSMsgType, web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

from domain.errors import FoyerError
from domain.identity import Principal
from domain.services import Core
from server import jsonwire
from server.eventloop import demote_transport, is_fair
from server.pings import FoyerEngine, cancel_ping

log = logging.getLogger("foyer.realtime")

NAMESPACE = "/live"
SIO: web.AppKey[socketio.AsyncServer] = web.AppKey("foyer.sio", socketio.AsyncServer)

ConnectHook = Callable[[str, Principal], None]
DisconnectHook = Callable[[str], None]


def refused(error: FoyerError) -> socketio.exceptions.ConnectionRefusedError:
    """A connect refusal the client sees as `connect_error` `{message, data: {code, message}}`."""
    return socketio.exceptions.ConnectionRefusedError(error.message, error.as_payload())


# ------------------------------------------------------------------------------------------------
# WebSocket frames and writers
# ------------------------------------------------------------------------------------------------

_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack


def ws_frame(payload: bytes, *, binary: bool = False) -> bytes:
    """One unmasked, unfragmented server→client WebSocket frame (RFC 6455 §5.2)."""
    first = 0x82 if binary else 0x81
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return _LEN2(first, 126, n) + payload
    return _LEN3(first, 127, n) + payload


class DirectWriter:
    """Writes whole frames straight to one client's transport, synchronously and in call order.

    `write` never blocks and never creates a task. Flow control is a bound, not a wait: past
    `limit` unsent bytes the connection is aborted (a slow client must not hold memory for the
    others; it will reconnect and replay what it missed).
    """

    __slots__ = ("transport", "ws", "limit", "dead")
    direct = True

    def __init__(self, transport: asyncio.Transport, ws: web.WebSocketResponse, limit: int) -> None:
        self.transport = transport
        self.ws = ws
        self.limit = limit
        self.dead = False

    def write(self, frames: bytes) -> bool:
        """Write pre-built frames; False when the connection is gone (caller drops the member)."""
        t = self.transport
        if self.dead or t.is_closing():
            return False
        t.write(frames)
        if t.get_write_buffer_size() > self.limit:
            self.dead = True
            log.info("client too slow (%d bytes unsent): disconnecting", t.get_write_buffer_size())
            t.abort()
            return False
        return True

    def write_packets(self, frames: bytes, batch: list[tuple[Any, bytes, bytes]]) -> bool:
        """`frames` is the concatenation of the batch's frames: one write."""
        return self.write(frames)

    def write_eio(self, pkt: eio_packet.Packet) -> None:
        encoded = pkt.encode()
        if isinstance(encoded, str):
            self.write(ws_frame(encoded.encode()))
        else:
            self.write(ws_frame(bytes(encoded), binary=True))


class QueueWriter:
    """Fallback for polling (and polling-upgraded) clients: engine.io's own queue, in order."""

    __slots__ = ("sock", "dead")
    direct = False

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.dead = False

    def write_packets(self, frames: bytes, batch: list[tuple[Any, bytes, bytes]]) -> bool:
        sock = self.sock
        if self.dead or sock.closed or sock.closing:
            return False
        for _, _, p in batch:  # p is b"4" + the Socket.IO packet
            sock.queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, p[1:].decode()))
        return True


class CloseGate:
    """Spreads connection teardown over loop iterations on a loop that does not do it itself.

    On uvloop, when thousands of clients disconnect at once, their read loops all wake in the
    same loop iteration; running every teardown (engine.io/Socket.IO disconnect handlers, room
    cleanup, the HTTP response's end) there would stall the loop for the whole batch. There each
    teardown first takes one of `burst` slots and yields once, so at most `burst` teardowns run
    per iteration and timers, pings and other clients' messages are served in between.

    The fair loop (server/eventloop.py) already wakes at most its `max_events` sockets per pass,
    so `slot()` returns None there: teardown keeps pace with the closes being read, instead of
    thousands of woken connections waiting for a slot (and filling the garbage collector's young
    generation while they wait).
    """

    def __init__(self, burst: int = 32) -> None:
        self.burst = burst
        self._sems: dict[asyncio.AbstractEventLoop, asyncio.Semaphore | None] = {}

    def slot(self) -> asyncio.Semaphore | None:
        loop = asyncio.get_running_loop()
        try:
            return self._sems[loop]
        except KeyError:
            sem = None if is_fair(loop) else asyncio.Semaphore(self.burst)
            self._sems = {loop: sem}  # one loop per process in practice
            return sem


CLOSE_GATE = CloseGate()


class FoyerWebSocket(eio_aiohttp.WebSocket):
    """engine.io's aiohttp WebSocket driver, with a direct write path for fresh WebSocket clients."""

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request: web.Request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False,
                                           autoclose=False)
        await self._sock.prepare(request)
        # Long-lived and chatty: on the fair loop, WebSockets queue behind HTTP requests, health
        # checks and the PostgreSQL/Redis sockets when many are ready at once (server/eventloop.py).
        demote_transport(request.transport)
        self.environ = environ
        sock = getattr(self.handler, "__self__", None)
        if sock is None or sock.connected:
            await self.handler(self)  # an upgrade from polling: engine.io's queue-based handler
        else:
            await _serve_direct(sock, self._sock, request, self.server)
        return self._sock


async def _serve_direct(sock: Any, ws: web.WebSocketResponse, request: web.Request, server: Any) -> None:
    """engine.io's WebSocket loop for a socket opened directly over WebSocket, minus the writer task."""
    limit = getattr(server, "foyer_send_buffer_limit", 4 * 1024 * 1024)
    transport = request.transport
    if transport is None:
        return
    writer = DirectWriter(transport, ws, limit)
    sock.connected = True
    sock.upgraded = True
    while True:  # what engine.io queued before the transport existed (the OPEN packet)
        try:
            pkt = sock.queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        sock.queue.task_done()
        if pkt is not None:
            writer.write_eio(pkt)
    sock.foyer_writer = writer

    async def send(pkt: eio_packet.Packet) -> None:
        if not await sock.check_ping_timeout():
            return
        writer.write_eio(pkt)
        if pkt.packet_type == eio_packet.CLOSE:
            # a server-side close: end the WebSocket too, so the read loop below finishes
            asyncio.ensure_future(ws.close())

    sock.send = send
    timeout = server.ping_interval + server.ping_timeout
    max_size = server.max_http_buffer_size
    try:
        while True:
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                break
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                if len(msg.data) > max_size:
                    break
                try:
                    await sock.receive(eio_packet.Packet(encoded_packet=msg.data))
                except eio_exceptions.UnknownPacketError:
                    pass
                except eio_exceptions.SocketIsClosedError:
                    break
                except Exception:  # a bad packet must not kill the node; drop the client
                    log.info("bad packet from %s, closing", sock.sid, exc_info=True)
                    break
            else:
                break
    finally:
        writer.dead = True
        gate = CLOSE_GATE.slot()
        if gate is None:
            await _teardown(sock, ws, server)
        else:
            async with gate:
                await asyncio.sleep(0)
                await _teardown(sock, ws, server)


async def _teardown(sock: Any, ws: web.WebSocketResponse, server: Any) -> None:
    """engine.io's and Socket.IO's disconnect, then the WebSocket's end; leaves no reference cycle behind."""
    cancel_ping(sock)
    try:
        await sock.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
    finally:
        if not ws.closed:
            await ws.close(drain=False)
        _drop_close_error_traceback(ws)
        # `send` (set in _serve_direct) closes over `sock`: a cycle per connection; the writer
        # holds the response. Dropped, so the connection's objects are freed by reference counting.
        sock.__dict__.pop("send", None)
        sock.foyer_writer = None


def _drop_close_error_traceback(ws: web.WebSocketResponse) -> None:
    """Free a closed WebSocket's objects by reference counting, not by the garbage collector.

    When the peer has already gone, aiohttp's `close()` cannot send its close frame and keeps the
    error on the response (`ws.exception()`); the error's traceback holds the frames of `close()`,
    which hold the response: a reference cycle per connection that only a collection frees. After
    10,000 clients leave at once those cycles made the young generation large enough for a
    collection to stall the loop for 50–150 ms. The error itself stays; only its traceback goes.
    """
    exc = ws.exception()
    if exc is not None:
        exc.__traceback__ = None


# ------------------------------------------------------------------------------------------------
# Client manager: python-socketio's in-memory manager with O(1) disconnect
# ------------------------------------------------------------------------------------------------

class _SidSet(dict):
    """An insertion-ordered set with the list methods python-socketio's manager calls."""

    def append(self, sid: str) -> None:
        self[sid] = None

    def remove(self, sid: str) -> None:
        del self[sid]


class FoyerManager(socketio.AsyncManager):
    """Local (single-node) Socket.IO bookkeeping; cross-node delivery is rooms/bus.py.

    Keeps `sid -> rooms` so `basic_disconnect` touches only the client's own rooms, and keeps
    pending connects/disconnects in hash sets rather than lists.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sid_rooms: dict[tuple[str, str], set[Any]] = {}

    def pre_connect(self, eio_sid: str, namespace: str) -> str | None:
        self.pending_connect.setdefault(namespace, _SidSet())
        return super().pre_connect(eio_sid, namespace)

    def pre_disconnect(self, sid: str, namespace: str) -> str | None:
        self.pending_disconnect.setdefault(namespace, _SidSet())
        return super().pre_disconnect(sid, namespace)

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._sid_rooms.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        rooms = self._sid_rooms.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._sid_rooms[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if namespace not in self.rooms:
            return
        for room in list(self._sid_rooms.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self._sid_rooms.pop((namespace, sid), None)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [r for r in self._sid_rooms.get((namespace, sid), ()) if r is not None]


# ------------------------------------------------------------------------------------------------
# Server
# ------------------------------------------------------------------------------------------------

class AfterAck:
    """Returned by an event handler: ack with `value`, then run `after()` (see module docstring)."""

    __slots__ = ("value", "after")

    def __init__(self, value: Any, after: Callable[[], None]) -> None:
        self.value = value
        self.after = after


class FoyerServer(socketio.AsyncServer):
    """python-socketio's server plus connect/disconnect hooks, `AfterAck` and timer-driven pings."""

    def _engineio_server_class(self) -> type:
        return FoyerEngine

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connect_hooks: list[ConnectHook] = []
        self.disconnect_hooks: list[DisconnectHook] = []

    async def _handle_event_internal(self, server: Any, sid: str, eio_sid: str, data: list[Any],
                                     namespace: str, id: int | None) -> None:
        r = await server._trigger_event(data[0], namespace, sid, *data[1:])
        after = None
        if isinstance(r, AfterAck):
            r, after = r.value, r.after
        if r != self.not_handled and id is not None:
            args = [] if r is None else list(r) if isinstance(r, tuple) else [r]
            await server._send_packet(eio_sid, self.packet_class(
                socketio.packet.ACK, namespace=namespace, id=id, data=args))
        if after is not None:
            after()

    def writer_for(self, sid: str) -> DirectWriter | QueueWriter | None:
        """The writer of a connected client on this node (None when it is gone)."""
        eio_sid = self.manager.eio_sid_from_sid(sid, NAMESPACE)
        sock = self.eio.sockets.get(eio_sid) if eio_sid else None
        if sock is None or sock.closed:
            return None
        writer = getattr(sock, "foyer_writer", None)
        return writer if writer is not None else QueueWriter(sock)


def create_sio(core: Core, *, client_manager: socketio.AsyncManager | None = None) -> FoyerServer:
    live = core.settings.live
    cors: Any = list(core.settings.cors_origins) if core.settings.cors_origins else []
    sio = FoyerServer(
        async_mode="aiohttp",
        client_manager=client_manager or FoyerManager(),
        json=jsonwire,
        cors_allowed_origins=cors,
        ping_interval=live.socketio_ping_interval,
        ping_timeout=live.socketio_ping_timeout,
        max_http_buffer_size=live.socketio_max_payload_bytes,
        transports=["websocket", "polling"],
        logger=False,
        engineio_logger=False,
    )
    sio.eio._async = dict(sio.eio._async, websocket=FoyerWebSocket)  # this server only
    sio.eio.foyer_send_buffer_limit = live.live_max_send_buffer_bytes

    @sio.on("connect", namespace=NAMESPACE)
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise refused(FoyerError("unauthorized", 'send {"token": "<access JWT>"} as the auth payload'))
        try:
            principal = core.tokens.verify_access(token)
        except FoyerError as exc:
            raise refused(exc) from None
        await sio.save_session(sid, {"principal": principal}, namespace=NAMESPACE)
        for hook in sio.connect_hooks:
            hook(sid, principal)

    @sio.on("disconnect", namespace=NAMESPACE)
    async def disconnect(sid: str, reason: Any = None) -> None:
        for hook in sio.disconnect_hooks:
            try:
                hook(sid)
            except Exception:  # one hook failing must not leak the others' state
                log.exception("disconnect hook failed")

    return sio


def attach(app: web.Application, sio: socketio.AsyncServer) -> None:
    sio.attach(app, socketio_path="socket.io")
    app[SIO] = sio

    async def close_connections(app: web.Application) -> None:
        """On shutdown, end every Socket.IO connection first (clients reconnect elsewhere and
        replay), so the graceful-shutdown wait is not spent on long-lived WebSockets."""
        if sio.eio.sockets:
            try:
                await asyncio.wait_for(sio.eio.disconnect(), 5.0)
            except Exception:  # shutting down; what is left is cancelled by aiohttp
                log.debug("closing socket.io connections on shutdown failed", exc_info=True)

    app.on_shutdown.append(close_connections)

