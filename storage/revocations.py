"""Signed-out sessions: their access JWTs stop working on every node at once, not at `exp`.

A session is a refresh-token family: the `sid` claim of every access token issued from it.
Whenever PostgreSQL revokes families (logout, logout everywhere, a password change or reset, an
admin disabling the account or resetting its 2FA, refresh-token reuse detected as theft), the
domain code, after that transaction committed, calls `SessionRevocations.revoke`: the session
ids go into a Redis sorted set (score: the wall-clock time after which no access token of the
session can still be valid) and are PUBLISHed; every node keeps the set in memory, so checking
a token (`is_revoked`, called by `TokenService.verify_access`) is one dict lookup, no I/O.

Guarantees and limits:
- A node reloads the whole set (only entries still in their window: the rest are pruned) every
  time it (re)subscribes, before it handles messages, so a revocation is never missed for long
  by a node that was briefly disconnected from Redis.
- The revoking node applies the revocation locally at once; other nodes on the message (loopback
  milliseconds).
- Fail-open: with Redis unreachable a revocation is still made in PostgreSQL (no refresh), but
  its access tokens keep working on other nodes until their `exp` (at most the access TTL), as
  they would without this mechanism; the failure is logged.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from storage.redis import Keyspace
from storage.subscription import ChannelListener

log = logging.getLogger("foyer.auth")

LEEWAY_SECONDS = 60  # clock leeway of access tokens (30 s) plus skew between nodes


class SessionRevocations:
    def __init__(self, redis: aioredis.Redis, keys: Keyspace, *, access_ttl_seconds: int) -> None:
        self.redis = redis
        self.window = access_ttl_seconds + LEEWAY_SECONDS
        self.zset = keys("auth", "revoked_sessions")
        self._revoked: dict[uuid.UUID, float] = {}  # session id -> wall-clock time it can be forgotten
        # Called with the sessions this node learns are revoked (its own revocations and the other
        # nodes'), e.g. to close their live connections.
        self.on_revoked: Callable[[list[uuid.UUID]], None] | None = None
        self.listener = ChannelListener(redis, keys("auth", "revocations"), name="session_revocations",
                                        on_message=self._on_message, on_subscribed=self._reload)

    # --- checking (hot path) --------------------------------------------------------------------
    def is_revoked(self, session_id: uuid.UUID) -> bool:
        until = self._revoked.get(session_id)
        if until is None:
            return False
        if until < time.time():
            del self._revoked[session_id]
            return False
        return True

    # --- revoking --------------------------------------------------------------------------------
    async def revoke(self, session_ids: Iterable[uuid.UUID | None]) -> bool:
        """Refuse these sessions here at once and announce them to every node; False when the
        announcement failed (Redis unreachable: the other nodes learn nothing, see module doc)."""
        ids = sorted({s for s in session_ids if s is not None})
        if not ids:
            return True
        until = time.time() + self.window
        self._remember(ids, until)
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zadd(self.zset, {str(s): until for s in ids})
            pipe.zremrangebyscore(self.zset, "-inf", time.time())
            pipe.expire(self.zset, int(self.window) + 1)
            pipe.publish(self.listener.channel, f"{until} " + " ".join(map(str, ids)))
            await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not announce %d revoked session(s) to the other nodes (%r): their access "
                        "tokens stay valid there until they expire", len(ids), exc)
            return False
        return True

    # --- the subscription ------------------------------------------------------------------------
    async def _reload(self) -> None:
        rows = await self.redis.zrangebyscore(self.zset, time.time(), "+inf", withscores=True)
        for member, until in rows:
            self._remember([uuid.UUID(member.decode() if isinstance(member, bytes) else member)], float(until))

    def _on_message(self, text: str) -> None:
        until, _, ids = text.partition(" ")
        try:
            self._remember([uuid.UUID(s) for s in ids.split()], float(until))
        except ValueError:
            log.warning("ignoring a malformed revocation message")

    def _remember(self, ids: list[uuid.UUID], until: float) -> None:
        fresh = [s for s in ids if s not in self._revoked]
        for s in ids:
            self._revoked[s] = max(until, self._revoked.get(s, 0.0))
        if fresh and self.on_revoked is not None:
            self.on_revoked(fresh)
        if len(self._revoked) > 100_000:  # bounded: drop what has expired
            now = time.time()
            self._revoked = {s: u for s, u in self._revoked.items() if u >= now}
