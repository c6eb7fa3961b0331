"""The Socket.IO server: namespace `/live`, JWT auth on connect, Redis-backed across nodes.

Wiring only. The rules and `on_<event>` bindings live in `rooms/` (`rooms.setup(sio, core)`),
which is the only code that emits. This module guarantees:
- a connection without a valid access token in the auth payload (`{"token": "<JWT>"}`) is
  refused; the client's `connect_error` carries `{"message", "data": {"code", "message"}}` with
  code `unauthorized`, `invalid_token` or `token_expired`;
- the principal is stored in the Socket.IO session (`await sio.get_session(sid)["principal"]`);
- emits reach clients on every node through a Redis manager whose channel carries the
  deployment's `redis_prefix`.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from aiohttp import web

from domain.errors import FoyerError
from domain.services import Core
from server import jsonwire

log = logging.getLogger("foyer.realtime")

NAMESPACE = "/live"
SIO: web.AppKey[socketio.AsyncServer] = web.AppKey("foyer.sio", socketio.AsyncServer)


def refused(error: FoyerError) -> socketio.exceptions.ConnectionRefusedError:
    """A connect refusal the client sees as `connect_error` `{message, data: {code, message}}`."""
    return socketio.exceptions.ConnectionRefusedError(error.message, error.as_payload())


def make_manager(core: Core) -> socketio.AsyncManager:
    """The cross-node client manager. Rooms may replace it with a faster one (see rooms/)."""
    return socketio.AsyncRedisManager(
        core.settings.redis_url or "", channel=core.keys("sio"), json=jsonwire
    )


def create_sio(core: Core, *, client_manager: socketio.AsyncManager | None = None) -> socketio.AsyncServer:
    live = core.settings.live
    cors: Any = list(core.settings.cors_origins) if core.settings.cors_origins else []
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=client_manager or make_manager(core),
        json=jsonwire,
        cors_allowed_origins=cors,
        ping_interval=live.socketio_ping_interval,
        ping_timeout=live.socketio_ping_timeout,
        max_http_buffer_size=live.socketio_max_payload_bytes,
        transports=["websocket", "polling"],
        logger=False,
        engineio_logger=False,
    )

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

    return sio


def attach(app: web.Application, sio: socketio.AsyncServer) -> None:
    sio.attach(app, socketio_path="socket.io")
    app[SIO] = sio
