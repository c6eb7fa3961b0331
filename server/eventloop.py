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

Guarantees (fair): the same asyncio semantics as the standard loop (it *is* the standard loop);
ordering of bytes within one socket is untouched; sockets are served in the order they became
ready, so during a storm a newly ready socket (a health check, a reconnect) waits its turn
behind the backlog instead of behind one long frozen pass. The cost is a few microseconds more
per socket operation than uvloop; the benchmarks in docs/operations.md give both figures.
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


class FairEpollSelector(selectors.EpollSelector):
    """An `EpollSelector` whose `select` returns at most `max_events` ready keys per call."""

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        super().__init__()
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # The standard EpollSelector.select, with `max_events` instead of "every registered fd".
        if timeout is None:
            timeout = -1
        elif timeout <= 0:
            timeout = 0
        else:
            timeout = math.ceil(timeout * 1e3) * 1e-3  # epoll counts milliseconds; never wake early
        ready: list[tuple[selectors.SelectorKey, int]] = []
        try:
            fd_events = self._selector.poll(timeout, self.max_events)
        except InterruptedError:
            return ready
        fd_to_key = self._fd_to_key
        for fd, event in fd_events:
            key = fd_to_key.get(fd)
            if key is not None:
                events = 0
                if event & ~select.EPOLLIN:
                    events |= selectors.EVENT_WRITE
                if event & ~select.EPOLLOUT:
                    events |= selectors.EVENT_READ
                ready.append((key, events & key.events))
        return ready


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
