"""Coalesced broadcasts: many changes to one thing (votes on a poll, upvotes in a session)
become at most `hz` room events per second for it, across all nodes.

    coalescer.register("poll", hz=4, send=fn)   # fn(key) computes from PostgreSQL and publishes
    await coalescer.mark("poll", str(poll_id))  # after each committed change

Guarantees (storage/coalesce.py holds the atomic Redis side):
- one broadcaster per key at a time, cluster-wide (a Redis lock with an owner token);
- leading and trailing edge: the first change is sent at once, later ones at most every
  1/hz seconds, and the last change is always followed by a send (within 1/hz s);
- `send` reads the current state from PostgreSQL, so every send is complete and exact, and
  a lost send is repaired by the next one (or by the join snapshot, which reads the same state);
- a broadcaster whose node dies leaves its key behind; every node's sweeper adopts such keys
  after the lock's TTL and sends once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from domain.services import Core
from storage.coalesce import CoalesceStore

log = logging.getLogger("foyer.rooms.coalesce")

SWEEP_SECONDS = 2.0
Send = Callable[[str], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _Kind:
    interval: float
    send: Send

    @property
    def ttl_ms(self) -> int:
        return max(3000, int(self.interval * 8000))


class Coalescer:
    def __init__(self, core: Core, spawn: Callable[[Any], asyncio.Task[Any]]) -> None:
        self.core = core
        self.spawn = spawn
        self.kinds: dict[str, _Kind] = {}
        self.token = f"{core.node_id}:{secrets.token_hex(4)}"
        self._store: CoalesceStore | None = None
        self._running: set[str] = set()  # members with a broadcaster on this node
        self._sweeper: asyncio.Task[None] | None = None
        self.sends = 0  # metrics/tests: broadcasts done by this node

    @property
    def store(self) -> CoalesceStore:
        if self._store is None:  # core.redis exists only once the node has started
            self._store = CoalesceStore(self.core.redis, self.core.keys)
        return self._store

    def register(self, kind: str, *, hz: float, send: Send) -> None:
        if ":" in kind or kind in self.kinds:
            raise ValueError(f"bad or duplicate coalesced kind {kind!r}")
        self.kinds[kind] = _Kind(1.0 / hz, send)

    async def mark(self, kind: str, key: str) -> None:
        """Something changed (committed): make sure a broadcast follows. Never raises."""
        member = f"{kind}:{key}"
        try:
            if await self.store.mark(member, token=self.token, ttl_ms=self.kinds[kind].ttl_ms):
                self._start(member)
        except Exception:
            log.exception("could not mark %s dirty; the next change or the sweeper will send it", member)

    def _start(self, member: str, *, forced: bool = False) -> None:
        if member in self._running:
            return
        self._running.add(member)
        self.spawn(self._run(member, forced))

    async def _run(self, member: str, forced: bool) -> None:
        kind_name, _, key = member.partition(":")
        kind = self.kinds.get(kind_name)
        try:
            if kind is None:
                return
            while True:
                if forced:
                    forced = False
                else:
                    state = await self.store.tick(member, token=self.token, ttl_ms=kind.ttl_ms)
                    if state != 1:
                        return
                started = time.monotonic()
                try:
                    await kind.send(key)
                    self.sends += 1
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("coalesced broadcast of %s failed; retrying next period", member)
                    with contextlib.suppress(Exception):  # still dirty: the next tick sends again
                        await self.store.mark(member, token=self.token, ttl_ms=kind.ttl_ms)
                await asyncio.sleep(max(0.0, kind.interval - (time.monotonic() - started)))
        finally:
            self._running.discard(member)

    # --- orphans --------------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="live-coalesce-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS * (0.75 + random.random() / 2))
            try:
                for member in await self.store.outstanding():
                    kind = self.kinds.get(member.partition(":")[0])
                    if kind is None or member in self._running:
                        continue
                    if await self.store.adopt(member, token=self.token, ttl_ms=kind.ttl_ms):
                        log.info("adopted orphaned broadcast %s", member)
                        self._start(member, forced=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("coalesce sweep failed")
