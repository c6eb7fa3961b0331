"""The cross-node bus: one Redis channel per room, subscribed only while this node has members.

Guarantees:
- A node receives only the rooms it has members in (no firehose): `attach(room)` subscribes
  the room's channel and resolves once the subscription is confirmed and the room's baseline
  seq is known (subscribe first, then read the baseline, so nothing falls in between).
- Messages are parsed and dispatched synchronously as they are read (storage/live_pubsub.py);
  durable events go to `LocalRoom.offer` (ordering, dedupe), ephemeral ones straight out.
- Nothing is dropped silently. The subscription never re-connects on its own: when the
  connection breaks, or when this node's canary (a PUBLISH to its own channel, every
  `live_canary_interval_seconds`) has not come back within `live_canary_timeout_seconds`, the
  bus reports itself unhealthy (`/readyz` fails), reconnects with capped jittered backoff,
  re-subscribes every room and asks the owner to catch each room up (`on_resubscribed`),
  which fetches the missed events from the replay stream or PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from domain.services import Core
from rooms.local import LocalRoom
from storage.live_pubsub import RedisSubscriber

log = logging.getLogger("foyer.rooms.bus")


class BusUnavailable(Exception):
    pass


class Bus:
    def __init__(self, core: Core, *, channel_of: Callable[[str], str],
                 on_first_subscribed: Callable[[LocalRoom], None],
                 on_resubscribed: Callable[[LocalRoom], None]) -> None:
        live = core.settings.live
        self.core = core
        self.url = live.live_bus_redis_url or core.settings.redis_url or ""
        self.channel_of = channel_of
        self.on_first_subscribed = on_first_subscribed
        self.on_resubscribed = on_resubscribed
        self.interval = live.live_canary_interval_seconds
        self.timeout = live.live_canary_timeout_seconds
        self.rooms: dict[bytes, LocalRoom] = {}
        self.canary_channel = core.keys("live", "canary", core.node_id).encode()
        self.sub: RedisSubscriber | None = None
        self.connected = False
        self.last_canary = 0.0
        self.reconnects = 0
        self.canary_failures = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._up = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.last_canary = asyncio.get_running_loop().time()
        self._tasks = [asyncio.create_task(self._supervise(), name="live-bus"),
                       asyncio.create_task(self._canary(), name="live-canary")]
        try:
            await asyncio.wait_for(self._up.wait(), 10)
        except TimeoutError:
            log.error("live bus: not connected to Redis after 10 s; retrying in the background")

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.sub is not None:
            self.sub.close()

    def healthy(self) -> bool:
        return self.connected and asyncio.get_running_loop().time() - self.last_canary <= self.timeout

    async def check(self) -> None:
        """Readiness check: raises when cross-node delivery cannot be trusted."""
        if not self.connected:
            raise BusUnavailable("the room bus is not subscribed")
        if not self.healthy():
            raise BusUnavailable("the room bus canary did not come back")

    # --- rooms --------------------------------------------------------------------------------

    def channel(self, room: LocalRoom) -> bytes:
        return self.channel_of(room.name).encode()

    def attach(self, room: LocalRoom) -> None:
        """Subscribe `room` (idempotent). `room.ready` resolves via `on_first_subscribed`."""
        ch = self.channel(room)
        if ch in self.rooms:
            return
        self.rooms[ch] = room
        if room.ready is None:
            room.ready = asyncio.get_running_loop().create_future()
        if self.sub is not None and self.connected:
            self.sub.subscribe(ch)

    def detach(self, room: LocalRoom) -> None:
        ch = self.channel(room)
        if self.rooms.pop(ch, None) is not None and self.sub is not None and self.connected:
            self.sub.unsubscribe(ch)

    # --- the subscription -----------------------------------------------------------------------

    def _on_message(self, channel: bytes, data: bytes) -> None:
        room = self.rooms.get(channel)
        if room is not None:
            head, _, body = data.partition(b"\n")
            if head == b"e":
                event, _, payload = body.partition(b"\n")
                room.emit_ephemeral(event, payload)
            else:
                room.offer(int(head), body)
        elif channel == self.canary_channel:
            self.last_canary = asyncio.get_running_loop().time()

    def _on_subscribed(self, channel: bytes) -> None:
        room = self.rooms.get(channel)
        if room is None:
            return
        if room.confirmed:
            self.on_resubscribed(room)
        else:
            room.confirmed = True
            self.on_first_subscribed(room)

    async def _supervise(self) -> None:
        backoff = 0.1
        while True:
            sub = RedisSubscriber(self.url, on_message=self._on_message, on_subscribed=self._on_subscribed,
                                  name=f"foyer-bus-{self.core.node_id}",
                                  connect_timeout=max(1.0, min(5.0, self.timeout)))
            try:
                await sub.connect()
            except asyncio.CancelledError:
                sub.close()
                raise
            except Exception as exc:
                log.error("live bus: cannot connect to Redis (%s); retrying in %.1f s", exc, backoff)
                sub.close()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)
                continue
            self.sub = sub
            self.connected = True
            self.last_canary = asyncio.get_running_loop().time()
            sub.subscribe(self.canary_channel, *self.rooms.keys())
            if self.reconnects:
                log.warning("live bus: re-subscribed %d room(s) after a broken subscription", len(self.rooms))
            self._up.set()
            backoff = 0.1
            try:
                exc = await sub.closed
            except asyncio.CancelledError:
                sub.close()
                raise
            finally:
                self.connected = False
            self.reconnects += 1
            log.error("live bus: Redis subscription lost (%s); reconnecting", exc or "closed")
            await asyncio.sleep(backoff * random.random())

    async def _canary(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.core.redis.publish(self.canary_channel, b"1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live bus: canary publish failed: %s", exc)
            if self.connected and loop.time() - self.last_canary > self.timeout:
                self.canary_failures += 1
                log.error("live bus: canary not received for %.1f s: subscription broken, reconnecting",
                          loop.time() - self.last_canary)
                if self.sub is not None:
                    self.sub.close()
