"""Run-wide state of the Locust live room (loadtests/live_room.py), shared by its modules: what the
setup found (event, session, polls), the accounts left to hand out, the organizer, the workers'
end-of-run figures, and the keynote clock (when the test started; whether a burst is on).

One copy per load-generator process; the locustfile's event listeners fill and reset it.
"""

from __future__ import annotations

import time
from typing import Any

NAMESPACE = "/live"
EPHEMERAL = {"presence:update", "room:kicked", "room:resync"}  # not sequenced: carry the last durable seq
SETUP: dict[str, Any] = {}
ACCOUNTS: list[dict[str, str]] = []
START = time.time()  # reset at test start (restart_clock)
ORGANIZER: dict[str, Any] = {}
SUMMARIES: dict[str, dict[str, Any]] = {}  # master: the workers' end-of-run figures
COMMON: dict[str, Any] = {}  # -u / -r / -t from the command line, for the shape


def restart_clock() -> None:
    """At test start: the join phase and the bursts are timed from now."""
    global START
    START = time.time()


def in_burst(opts: Any, now: float | None = None) -> bool:
    """Whether a burst is on (after the join phase, the first --burst-seconds of every --burst-every)."""
    t = (now or time.time()) - START - opts.join_seconds
    return t > 0 and (t % opts.burst_every) < opts.burst_seconds


def next_burst_in(opts: Any) -> float:
    """Seconds until the next burst starts."""
    t = time.time() - START - opts.join_seconds
    if t < 0:
        return -t
    return opts.burst_every - (t % opts.burst_every)


def burst_at(opts: Any, k: int) -> float:
    """When (time.time()) the k-th burst starts, counting from 0."""
    return START + opts.join_seconds + k * opts.burst_every
