"""Real Socket.IO clients (python-socketio AsyncClient over WebSocket) for tests."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import socketio

NAMESPACE = "/live"


class LiveClient:
    """A WebSocket-only Socket.IO client on /live that records every event it receives."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, list[Any]] = defaultdict(list)
        self._waiters: list[tuple[str, asyncio.Future]] = []
        self.connect_error: Any = None

        @self.sio.on("connect_error", namespace=NAMESPACE)
        async def on_connect_error(data: Any = None) -> None:
            self.connect_error = data

        @self.sio.on("*", namespace=NAMESPACE)
        async def any_event(event: str, data: Any = None) -> None:
            self.events[event].append(data)
            for name, fut in list(self._waiters):
                if name == event and not fut.done():
                    fut.set_result(data)

    async def connect(self, *, auth: Any = ...) -> None:
        payload = {"token": self.token} if auth is ... else auth
        await self.sio.connect(self.url, namespaces=[NAMESPACE], transports=["websocket"], auth=payload,
                               wait_timeout=10)

    async def call(self, event: str, data: Any = None, *, timeout: float = 10) -> Any:
        return await self.sio.call(event, data, namespace=NAMESPACE, timeout=timeout)

    async def wait_for(self, event: str, *, timeout: float = 10) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((event, fut))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.remove((event, fut))

    async def disconnect(self) -> None:
        await self.sio.disconnect()
