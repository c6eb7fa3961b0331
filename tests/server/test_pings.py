"""Engine.IO heartbeats: timer-driven, jittered, never late, cancelled with the connection."""

from __future__ import annotations

import asyncio
import time

from engineio import packet

from server.pings import PING_JITTER, cancel_ping, schedule_ping
from server.realtime import SIO
from tests.support.live import LiveClient


class _Sock:
    """The parts of an engine.io socket the scheduler reads, with a writer that records PINGs."""

    def __init__(self) -> None:
        self.closing = False
        self.closed = False
        self.last_ping: float | None = None
        self.pings: list[float] = []
        self.foyer_writer = self

    def write_eio(self, pkt: packet.Packet) -> None:
        assert pkt.packet_type == packet.PING
        self.pings.append(time.monotonic())


async def test_a_ping_comes_within_the_interval_never_later_and_only_once():
    socks = [_Sock() for _ in range(50)]
    started = time.monotonic()
    for s in socks:
        schedule_ping(s, 0.2)
    await asyncio.sleep(0.35)
    delays = [s.pings[0] - started for s in socks if len(s.pings) == 1]
    assert len(delays) == len(socks)  # every socket pinged exactly once
    assert all(0.2 * (1 - PING_JITTER) - 0.01 <= d <= 0.2 + 0.05 for d in delays), delays
    assert max(delays) - min(delays) > 0.002  # spread, not all in the same instant
    assert all(s.last_ping is not None and s.foyer_ping_timer is None for s in socks)


async def test_closed_or_cancelled_sockets_are_not_pinged():
    closed, cancelled, live = _Sock(), _Sock(), _Sock()
    for s in (closed, cancelled, live):
        schedule_ping(s, 0.05)
    closed.closed = True
    cancel_ping(cancelled)
    await asyncio.sleep(0.15)
    assert closed.pings == [] and cancelled.pings == [] and len(live.pings) == 1


async def test_rescheduling_keeps_one_pending_ping():
    s = _Sock()
    schedule_ping(s, 0.05)
    schedule_ping(s, 0.05)
    await asyncio.sleep(0.15)
    assert len(s.pings) == 1


async def test_a_real_client_stays_connected_over_many_ping_rounds_and_its_timer_goes_with_it(
        app_factory, settings_factory, http):
    from tests.support.api import Api

    node = await app_factory(settings_factory(socketio_ping_interval=0.2, socketio_ping_timeout=0.4))
    api = Api(str(node.make_url("/")), http)
    user = await api.register()
    client = LiveClient(str(node.make_url("/")), token=user.access_token)
    await client.connect()
    eio = node.app[SIO].eio
    (sock,) = eio.sockets.values()
    timers: list[asyncio.TimerHandle] = []
    for _ in range(24):  # ~1.2 s: six rounds; the client drops the link if a PING is 0.6 s late
        await asyncio.sleep(0.05)
        timer = getattr(sock, "foyer_ping_timer", None)
        if timer is not None and (not timers or timers[-1] is not timer):
            timers.append(timer)
    assert client.sio.connected
    assert len(timers) >= 4  # a new timer each round, armed when the previous PING's PONG came back
    await client.disconnect()
    for _ in range(50):
        if sock.closed:
            break
        await asyncio.sleep(0.02)
    assert sock.closed and getattr(sock, "foyer_ping_timer", None) is None
