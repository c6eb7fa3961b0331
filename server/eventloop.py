"""The serving node's event loop: a fair epoll loop (default) or uvloop.

Why a choice. uvloop runs every ready socket's callback in one pass of the loop: libuv asks epoll
for up to 1,024 events at a time and keeps asking, without blocking, until fewer come back. When
10,000 WebSocket clients hang up in the same instant (a keynote ends, a proxy restarts), one pass
handles all 10,000 closes, and nothing else (timers, other sockets, `/healthz`) runs for about
half a second — on a bare aiohttp server as much as on Foyer (`bench/aiohttp_close_floor.py`).

`fair` is the standard library's selector loop over an epoll selector that takes at most
`max_events` ready sockets per pass (`FOYER_LOOP_MAX_EVENTS`, default 64). epoll is
level-triggered here, so a socket not taken in this pass is reported again in the next one, and
the kernel hands ready sockets out round-robin, so none starves. Timers and callbacks scheduled
in between run after every pass: socket readiness never makes a pass longer than the work of
`max_events` sockets (about 5–25 ms), whatever the number of sockets that become ready at once.
Work the application schedules itself is not bounded by this: thousands of timers due at the
same instant still run in one pass (so per-connection timers are spread out: server/pings.py).

Two classes of sockets. Within a class, sockets are served in the order they became ready, so
a health check arriving while 10,000 WebSockets close would wait for all of them (0.7–1.1 s
measured). Foyer therefore moves each WebSocket, once upgraded, to a *bulk* class
(`demote_transport`); everything else (HTTP requests, health checks, the listening socket, the
PostgreSQL and Redis client sockets) stays in the *main* class. A pass takes ready main sockets
first and fills up with bulk ones, which always get at least a quarter of `max_events`: API
calls and database answers are never queued behind a WebSocket storm (the same health check:
70–90 ms), and WebSockets are never starved.

Guarantees (fair): the same asyncio semantics as the standard loop (it *is* the standard loop);
ordering of bytes within one socket is untouched; a pass handles at most `max_events` main and
`max(max_events - main, max_events // 4)` bulk sockets. The cost is a few microseconds more per
socket operation than uvloop; the benchmarks in docs/operations.md give both figures.
"""

from __future__ import annotations

import asyncio
import math
import select
import selectors
from collections.abc import Callable
from typing import Any

LOOP_KINDS = ("fair", "uvloop")
DEFAULT_MAX_EVENTS = 64


class _TwoClassEpoll:
    """Two epoll sets behind the one-poller interface `selectors.EpollSelector` drives.

    `main` holds every socket when it is registered; `bulk` holds sockets demoted to it
    (`FairEpollSelector.demote`). The bulk set's own fd sits in `main`, readable whenever a bulk
    socket is ready, so one blocking `main.poll` waits for both."""

    def __init__(self) -> None:
        self.main = select.epoll()
        self.bulk = select.epoll()
        self.bulk_fd = self.bulk.fileno()
        self.bulk_fds: set[int] = set()
        self.main.register(self.bulk_fd, select.EPOLLIN)

    def register(self, fd: int, events: int) -> None:
        self.bulk_fds.discard(fd)  # a new registration (of a possibly reused fd number) starts in main
        self.main.register(fd, events)

    def unregister(self, fd: int) -> None:
        if fd in self.bulk_fds:
            self.bulk_fds.discard(fd)
            self.bulk.unregister(fd)
        else:
            self.main.unregister(fd)

    def modify(self, fd: int, events: int) -> None:
        (self.bulk if fd in self.bulk_fds else self.main).modify(fd, events)

    def demote(self, fd: int, events: int) -> None:
        self.main.unregister(fd)
        try:
            self.bulk.register(fd, events)
        except BaseException:
            self.main.register(fd, events)
            raise
        self.bulk_fds.add(fd)

    def fileno(self) -> int:
        return self.main.fileno()

    def close(self) -> None:
        self.bulk.close()
        self.main.close()


class FairEpollSelector(selectors.EpollSelector):
    """An `EpollSelector` whose `select` returns at most `max_events` ready keys per call, with
    two classes of sockets.

    Sockets start in the main class. Long-lived, chatty sockets (Foyer's WebSockets) are moved
    to the bulk class (`demote`). A pass takes the main class first, then fills up to
    `max_events` from the bulk class, which always gets at least a quarter of them: HTTP
    requests, health checks, new connections and the PostgreSQL/Redis client sockets are not
    queued behind 10,000 WebSockets closing at once, and WebSockets are never starved."""

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        super().__init__()
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events
        self.bulk_share = max(1, max_events // 4)
        self._selector.close()
        self._poller = _TwoClassEpoll()
        self._selector = self._poller  # type: ignore[assignment] - the interface EpollSelector uses

    def demote(self, fd: int) -> bool:
        """Move registered socket `fd` to the bulk class (False if it is not registered now). A
        socket that is unregistered and registered again (e.g. reading paused and resumed)
        comes back in the main class."""
        key = self._fd_to_key.get(fd)
        if key is None or fd in self._poller.bulk_fds:
            return False
        events = (select.EPOLLIN if key.events & selectors.EVENT_READ else 0) | (
            select.EPOLLOUT if key.events & selectors.EVENT_WRITE else 0)
        self._poller.demote(fd, events)
        return True

    def is_bulk(self, fd: int) -> bool:
        return fd in self._poller.bulk_fds

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # The standard EpollSelector.select, with `max_events` instead of "every registered fd",
        # over the two classes.
        if timeout is None:
            timeout = -1
        elif timeout <= 0:
            timeout = 0
        else:
            timeout = math.ceil(timeout * 1e3) * 1e-3  # epoll counts milliseconds; never wake early
        poller = self._poller
        try:
            fd_events = poller.main.poll(timeout, self.max_events)
        except InterruptedError:
            return []
        bulk_fd = poller.bulk_fd
        bulk_ready = False
        ready: list[tuple[selectors.SelectorKey, int]] = []
        for fd, event in fd_events:
            if fd == bulk_fd:
                bulk_ready = True
            else:
                self._add_ready(ready, fd, event)
        if bulk_ready or len(fd_events) >= self.max_events:
            room = max(self.max_events - len(ready), self.bulk_share)
            try:
                for fd, event in poller.bulk.poll(0, room):
                    self._add_ready(ready, fd, event)
            except InterruptedError:
                pass
        return ready

    def _add_ready(self, ready: list[tuple[selectors.SelectorKey, int]], fd: int, event: int) -> None:
        key = self._fd_to_key.get(fd)
        if key is not None:
            events = 0
            if event & ~select.EPOLLIN:
                events |= selectors.EVENT_WRITE
            if event & ~select.EPOLLOUT:
                events |= selectors.EVENT_READ
            ready.append((key, events & key.events))


def demote_transport(transport: Any) -> bool:
    """Put `transport`'s socket in the bulk class of the running fair loop (no-op elsewhere)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    if not is_fair(loop):
        return False
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    return loop._selector.demote(sock.fileno())  # type: ignore[attr-defined]


def loop_factory(kind: str, max_events: int = DEFAULT_MAX_EVENTS) -> Callable[[], asyncio.AbstractEventLoop]:
    """A zero-argument factory for the loop `kind` ("fair" or "uvloop")."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:  # pragma: no cover - non-Linux platforms
            return asyncio.new_event_loop
        return uvloop.new_event_loop
    if kind == "fair":
        if not hasattr(select, "epoll"):  # pragma: no cover - non-Linux platforms
            return asyncio.new_event_loop
        return lambda: asyncio.SelectorEventLoop(FairEpollSelector(max_events))
    raise ValueError(f"unknown event loop {kind!r}; expected one of {', '.join(LOOP_KINDS)}")


def new_loop(kind: str, max_events: int = DEFAULT_MAX_EVENTS) -> asyncio.AbstractEventLoop:
    """A new loop of `kind`, set as the current thread's loop (what `web.run_app(loop=...)` expects)."""
    loop = loop_factory(kind, max_events)()
    asyncio.set_event_loop(loop)
    return loop


def is_fair(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` bounds the ready sockets it handles per pass (the `fair` loop)."""
    return isinstance(getattr(loop, "_selector", None), FairEpollSelector)


def describe(loop: Any) -> str:
    """"fair(64)", "uvloop" or the loop's class name, for the start-up banner and metrics."""
    if is_fair(loop):
        return f"fair({loop._selector.max_events})"
    module = type(loop).__module__
    return "uvloop" if module.startswith("uvloop") else type(loop).__name__
