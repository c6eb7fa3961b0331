"""One Redis pub/sub channel, kept subscribed: the loop behind every per-node cache that other
nodes invalidate (sold-out flags, revoked sessions).

Guarantees of `ChannelListener.run`:
- `on_subscribed()` runs after every (re)subscription, before any message of that subscription
  is handled: the place to (re)load state, since messages published while the node was not
  subscribed are lost.
- Each message is passed to `on_message(text)` in publication order.
- `on_lost()` runs whenever the subscription ends (error, Redis restart, cancellation); the
  loop then backs off (capped, jittered) and subscribes again. Cancellation propagates.
- `subscribed` is set exactly while the subscription is up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

log = logging.getLogger("foyer.redis")


class ChannelListener:
    def __init__(self, redis: aioredis.Redis, channel: str, *, name: str,
                 on_message: Callable[[str], None],
                 on_subscribed: Callable[[], Awaitable[None]] | None = None,
                 on_lost: Callable[[], None] | None = None) -> None:
        self.redis = redis
        self.channel = channel
        self.name = name
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.on_lost = on_lost
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"foyer.{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def wait_subscribed(self, within_s: float) -> bool:
        try:
            await asyncio.wait_for(self.subscribed.wait(), within_s)
            return True
        except TimeoutError:
            return False

    async def run(self) -> None:
        failures = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if self.on_subscribed is not None:
                    await self.on_subscribed()
                self.subscribed.set()
                failures = 0
                while True:
                    msg = await pubsub.get_message(timeout=5.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    data = msg["data"]
                    self.on_message(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("%s: subscription to %s lost (%r); resubscribing", self.name, self.channel, exc)
            finally:
                self.subscribed.clear()
                if self.on_lost is not None:
                    self.on_lost()
                try:
                    await pubsub.aclose()
                except Exception:  # closing a broken connection
                    pass
            await asyncio.sleep(min(5.0, 0.05 * 2 ** failures) * (0.5 + random.random()))
