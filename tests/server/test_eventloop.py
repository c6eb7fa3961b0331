"""The fair event loop: a bounded number of ready sockets per pass, none left behind, none starved."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from server.eventloop import FairEpollSelector, describe, loop_factory


def _pairs(n: int) -> list[tuple[socket.socket, socket.socket]]:
    pairs = [socket.socketpair() for _ in range(n)]
    for a, b in pairs:
        a.setblocking(False)
        b.setblocking(False)
    return pairs


def test_select_returns_at_most_max_events_and_reports_the_rest_next_time():
    pairs = _pairs(50)
    selector = FairEpollSelector(max_events=8)
    try:
        for i, (a, _b) in enumerate(pairs):
            selector.register(a, 1, data=i)  # EVENT_READ
        for _a, b in pairs:
            b.send(b"x")  # every socket is readable now
        seen: list[int] = []
        for _ in range(10):
            ready = selector.select(0)
            assert len(ready) <= 8
            for key, events in ready:
                assert events == 1  # read, never a spurious write
                key.fileobj.recv(1)  # consumed: not ready any more
                seen.append(key.data)
        assert sorted(seen) == list(range(50))  # level-triggered: nobody is lost, nobody twice
        assert selector.select(0) == []
    finally:
        selector.close()
        for a, b in pairs:
            a.close()
            b.close()


def test_select_does_not_starve_sockets_that_stay_ready():
    pairs = _pairs(20)
    selector = FairEpollSelector(max_events=4)
    try:
        for i, (a, _b) in enumerate(pairs):
            selector.register(a, 1, data=i)
        for _a, b in pairs:
            b.send(b"x")  # never read: they stay ready forever
        seen = {key.data for _ in range(5) for key, _ in selector.select(0)}
        assert seen == set(range(20))  # epoll hands ready sockets out round-robin
    finally:
        selector.close()
        for a, b in pairs:
            a.close()
            b.close()


def test_max_events_must_be_positive():
    with pytest.raises(ValueError):
        FairEpollSelector(0)
    with pytest.raises(ValueError):
        loop_factory("tokio")


def test_a_burst_of_ready_sockets_is_spread_over_passes_so_timers_run_in_between():
    """600 sockets ready at once, 1 ms of work each: with 16 per pass a 5 ms timer still fires
    long before the burst is done, and every socket is served."""
    loop = loop_factory("fair", 16)()
    assert describe(loop) == "fair(16)"

    async def scenario() -> tuple[int, float, float]:
        pairs = _pairs(600)
        served = 0
        done = asyncio.Event()

        def on_readable(sock: socket.socket) -> None:
            nonlocal served
            sock.recv(1)
            running.remove_reader(sock)
            time.sleep(0.001)  # a socket's worth of work
            served += 1
            if served == len(pairs):
                done.set()

        running = asyncio.get_running_loop()
        for a, _b in pairs:
            running.add_reader(a, on_readable, a)
        start = running.time()
        timer_fired = running.create_future()
        running.call_later(0.005, lambda: timer_fired.set_result(running.time() - start))
        for _a, b in pairs:
            b.send(b"x")
        await done.wait()
        total = running.time() - start
        for a, b in pairs:
            a.close()
            b.close()
        return served, await timer_fired, total

    try:
        served, timer_at, total = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert served == 600
    assert total >= 0.6
    assert timer_at < total / 4, (timer_at, total)  # not after the whole burst, as one pass would do


def test_uvloop_is_available_as_the_alternative():
    loop = loop_factory("uvloop")()
    try:
        assert describe(loop) == "uvloop"
    finally:
        loop.close()
