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


def test_demoted_sockets_wait_behind_main_ones_but_always_get_a_share():
    """40 ready WebSocket-like (bulk) sockets and 40 ready HTTP-like (main) ones, 16 per pass:
    main first; bulk still gets at least a quarter of every pass; nothing lost."""
    bulk, main = _pairs(40), _pairs(40)
    selector = FairEpollSelector(max_events=16)
    try:
        for i, (a, _b) in enumerate(bulk):
            selector.register(a, 1, data=("bulk", i))
            assert selector.demote(a.fileno()) and selector.is_bulk(a.fileno())
        assert not selector.demote(bulk[0][0].fileno())  # already there
        for i, (a, _b) in enumerate(main):
            selector.register(a, 1, data=("main", i))
        for _a, b in bulk + main:
            b.send(b"x")
        passes = []
        for _ in range(10):
            ready = selector.select(0)
            for key, _ in ready:
                key.fileobj.recv(1)
            passes.append([key.data for key, _ in ready])
        first = passes[0]
        # the bulk set's own fd takes one of main's 16 slots: 15 main sockets, then 4 bulk ones
        assert sum(1 for c, _ in first if c == "main") == 15 and sum(1 for c, _ in first if c == "bulk") == 4
        seen = [d for p in passes for d in p]
        assert sorted(seen) == sorted([("bulk", i) for i in range(40)] + [("main", i) for i in range(40)])
        assert selector.select(0) == []
    finally:
        selector.close()
        for a, b in bulk + main:
            a.close()
            b.close()


def test_a_demoted_socket_comes_back_to_main_when_registered_again_and_blocking_waits_for_both():
    (a, b), (c, d) = _pairs(2)
    selector = FairEpollSelector(max_events=8)
    try:
        selector.register(a, 1, data="ws")
        selector.demote(a.fileno())
        selector.modify(a, 1 | 2, data="ws")  # a writer added: stays in bulk
        assert selector.is_bulk(a.fileno())
        assert [k.data for k, ev in selector.select(0) if ev & 2] == ["ws"]  # writable, from the bulk set
        selector.modify(a, 1, data="ws")
        started = time.monotonic()
        assert selector.select(0.05) == [] and time.monotonic() - started >= 0.04  # blocks on both sets
        b.send(b"x")
        assert [k.data for k, _ in selector.select(1)] == ["ws"]  # a blocking wait wakes for a bulk socket
        a.recv(1)
        selector.unregister(a)  # e.g. reading paused
        assert not selector.is_bulk(a.fileno())
        selector.register(a, 1, data="ws again")
        assert not selector.is_bulk(a.fileno())  # back in main
        selector.register(c, 1, data="other")
        d.send(b"y")
        assert [k.data for k, _ in selector.select(0)] == ["other"]
    finally:
        selector.close()
        for s in (a, b, c, d):
            s.close()


def test_a_demoted_transport_keeps_reading_and_writing_on_the_fair_loop():
    """What Foyer does to each WebSocket after the upgrade, on a real asyncio server."""
    from server.eventloop import demote_transport

    loop = loop_factory("fair", 8)()

    async def scenario() -> tuple[bool, bool, bytes]:
        demoted: dict[str, bool] = {}

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                if not demoted:  # after the first request was read, as Foyer does after the upgrade
                    demoted["ok"] = demote_transport(self.transport)
                    fd = self.transport.get_extra_info("socket").fileno()
                    demoted["bulk"] = asyncio.get_running_loop()._selector.is_bulk(fd)
                self.transport.write(data.upper())

        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        answer = await asyncio.wait_for(reader.readexactly(5), 5)
        writer.write(b"again")  # read from the bulk set now
        answer += await asyncio.wait_for(reader.readexactly(5), 5)
        writer.close()
        server.close()
        await server.wait_closed()
        return demoted["ok"], demoted["bulk"], answer

    try:
        ok, bulk, answer = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert ok and bulk and answer == b"HELLOAGAIN"


async def test_demote_is_a_no_op_on_other_loops():
    from server.eventloop import demote_transport

    assert demote_transport(None) is False  # the test suite's own loop is uvloop
