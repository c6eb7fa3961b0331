"""Closed WebSockets are freed by reference counting: no reference cycle per connection.

With 10,000 connections closing at once, cycles left per connection filled the collector's young
generation and made single collections stall the event loop for 50-85 ms (docs/operations.md)."""

from __future__ import annotations

import asyncio
import base64
import gc
import os

from aiohttp import web

from server.realtime import SIO


async def _raw_websocket(host: str, port: int) -> asyncio.StreamWriter:
    """An engine.io WebSocket opened by hand, so the test controls exactly how it closes."""
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    return writer


async def _until(predicate, seconds: float = 4.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)


async def test_closed_websockets_are_freed_without_the_garbage_collector(app_factory, settings_factory):
    # no gc.freeze on this node: frozen objects would be invisible to gc.get_objects()
    node = await app_factory(settings_factory(live_gc_freeze_interval_seconds=0))
    eio = node.app[SIO].eio
    gc.collect()
    before = {id(o) for o in gc.get_objects() if isinstance(o, web.WebSocketResponse)}  # other tests' leftovers
    writers = [await _raw_websocket(node.host, node.port) for _ in range(20)]
    await _until(lambda: len(eio.sockets) == 20)
    assert len(eio.sockets) == 20
    gc.collect()
    gc.disable()
    try:
        for writer in writers:  # what a browser sends when a tab closes: a masked close frame, then FIN
            writer.write(bytes((0x88, 0x82)) + b"\x00\x00\x00\x00" + b"\x03\xe8")
            writer.close()
        await _until(lambda: not eio.sockets)
        await asyncio.sleep(0.2)  # the handlers finish
        alive = sum(1 for o in gc.get_objects() if isinstance(o, web.WebSocketResponse) and id(o) not in before)
        assert alive == 0, f"{alive} closed WebSocket responses are kept alive by reference cycles"
    finally:
        gc.enable()
