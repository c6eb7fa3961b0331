"""Engine.IO heartbeats on a timer, spread out in time, cancelled when the connection ends.

python-engineio sends each connection's PING from a task that sleeps `ping_interval`, started
at the handshake and again after every PONG. Two things go wrong with 10,000 connections:

- after a mass connect (a keynote starting, every client reconnecting after a node restart) the
  handshakes fall within a second or two, so every 25 s ~10,000 sleeping tasks wake in the same
  pass of the event loop and stall it for 100 ms or more;
- a closed connection's task sleeps on until its time comes: a mass disconnect leaves 10,000
  tasks that all wake later, together, to find their connection gone.

`FoyerEngine` replaces that task with a `loop.call_later` timer per connection (no task, no
future while waiting). Each delay is `ping_interval` shortened by up to `PING_JITTER` (10 %), at
random, so aligned schedules drift apart within a few rounds; a PING never comes later than
engine.io promises the client (`pingInterval`), only up to 10 % earlier. The timer is kept on
the socket (`foyer_ping_timer`) and cancelled at teardown (`cancel_ping`).

Guarantees: at most one pending ping timer per connection (engine.io schedules the next ping
only after the previous PONG); a closed or closing connection is never pinged.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import engineio
from engineio import async_socket, packet

PING_JITTER = 0.1

_SEND_PING = async_socket.AsyncSocket._send_ping


class FoyerEngine(engineio.AsyncServer):
    """python-engineio's server with timer-driven, jittered pings (see the module docstring)."""

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(target, "__func__", None) is _SEND_PING and not args and not kwargs:
            return schedule_ping(target.__self__, self.ping_interval)  # type: ignore[attr-defined]
        return super().start_background_task(target, *args, **kwargs)


def schedule_ping(sock: Any, interval: float) -> asyncio.TimerHandle:
    """Ping `sock` once, `interval` (less up to PING_JITTER of it) from now."""
    cancel_ping(sock)
    delay = interval * (1.0 - PING_JITTER * random.random())  # noqa: S311 - spreading load, not security
    timer = asyncio.get_running_loop().call_later(delay, _ping_due, sock)
    sock.foyer_ping_timer = timer
    return timer


def cancel_ping(sock: Any) -> None:
    """Drop `sock`'s pending ping (at teardown: a closed connection needs no wake-up)."""
    timer = getattr(sock, "foyer_ping_timer", None)
    if timer is not None:
        timer.cancel()
        sock.foyer_ping_timer = None


def _ping_due(sock: Any) -> None:
    sock.foyer_ping_timer = None
    if sock.closing or sock.closed:
        return
    sock.last_ping = time.time()
    writer = getattr(sock, "foyer_writer", None)
    if writer is not None:  # a direct WebSocket (server/realtime.py): the write is synchronous
        writer.write_eio(packet.Packet(packet.PING))
    else:  # polling, or a WebSocket upgraded from polling: engine.io's queue
        sock.server.start_background_task(sock.send, packet.Packet(packet.PING))
