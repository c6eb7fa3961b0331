"""The waiting room for a ticket drop: a queue per ticket type, admitted in arrival order at a
configured global rate; only admitted accounts may hold that type.

- `POST /api/events/{id}/queue` gives a signed queue token (HMAC, bound to the account, the
  ticket type and the join time) and a position; `GET .../queue/{token}` tells the position or,
  once admitted, an **access grant**: a signed, expiring token sent with the order as header
  `X-Foyer-Queue-Grant`. The order path checks it without any I/O (`pre_hold`); without a valid
  grant for each queued type of the order, the answer is `403 queue_required`.
- One place per account (the line is keyed by account); per client IP at most `max_per_ip`
  places per queue (scalping bots behind one address); joins and polls per account are
  rate-limited (`FOYER_QUEUE_POLLS_PER_MINUTE`).
- The admitter runs on every node every `FOYER_QUEUE_TICK_MS`; each tick is one Redis script
  whose credit grows with the time since the last tick of any node, so the admission rate is
  global (storage/queue.py). The configuration lives in PostgreSQL and is mirrored into Redis by
  every node's loop (a lost Redis is rebuilt within seconds; the line from the tokens).
- The order path reads which types are queued from an in-process cache
  (`FOYER_SALE_CACHE_SECONDS`): turning a queue on is enforced on every node within that time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import random
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from domain.cache import ReadThroughCache
from domain.errors import FoyerError, not_found, rate_limited
from domain.identity import Principal
from domain.policy import Action, authorize
from domain.tickets.rules import HoldContext
from storage import queue as store
from storage.db import Database
from storage.queue import QueueStore
from storage.ratelimit import Limit, RateLimiter

log = logging.getLogger("foyer.queue")

GRANT_HEADER = "X-Foyer-Queue-Grant"
POSITION_PUSH_MAX = 500  # live position updates go to the head of the line; the rest poll
_TOKEN = struct.Struct(">B16s16s16sQ")  # version, event, type, account, joined µs | grant expiry ms


class QueueConfigIn(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool
    admit_per_minute: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    grant_seconds: Annotated[int, msgspec.Meta(ge=30, le=86_400)] | None = None
    max_per_ip: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None


class JoinIn(msgspec.Struct, forbid_unknown_fields=True):
    ticket_type_id: uuid.UUID | None = None  # optional when exactly one type of the event is queued


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 (truncated to 128 bits) over kind + payload, key derived from the JWT secret so
    every node of a deployment agrees."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"foyer-queue-v1", hashlib.sha256).digest()

    def sign(self, kind: str, event_id: uuid.UUID, type_id: uuid.UUID, user_id: uuid.UUID, value: int) -> str:
        payload = _TOKEN.pack(1, event_id.bytes, type_id.bytes, user_id.bytes, value)
        mac = hmac.new(self._key, kind.encode() + payload, hashlib.sha256).digest()[:16]
        return f"{kind}1.{_b64(payload)}.{_b64(mac)}"

    def verify(self, kind: str, token: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, int] | None:
        try:
            prefix, payload_txt, mac_txt = token.strip().split(".")
            payload, mac = _unb64(payload_txt), _unb64(mac_txt)
            if prefix != f"{kind}1" or len(payload) != _TOKEN.size:
                return None
            good = hmac.new(self._key, kind.encode() + payload, hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(good, mac):
                return None
            version, event, type_, user, value = _TOKEN.unpack(payload)
        except (ValueError, TypeError, struct.error):
            return None
        if version != 1:
            return None
        return uuid.UUID(bytes=event), uuid.UUID(bytes=type_), uuid.UUID(bytes=user), value


class WaitingRoom:
    def __init__(self, *, db: Database, store_: QueueStore, limiter: RateLimiter, signer: Signer, tickets: Any,
                 keys: Any, cache_seconds: float, default_grant_seconds: int, default_max_per_ip: int,
                 polls_per_minute: int) -> None:
        self.db = db
        self.store = store_
        self.limiter = limiter
        self.signer = signer
        self.tickets = tickets  # domain.tickets.services.TicketServices (the sale catalog cache)
        self.keys = keys
        self.cache_seconds = cache_seconds
        self.default_grant_seconds = default_grant_seconds
        self.default_max_per_ip = default_max_per_ip
        self.polls_per_minute = polls_per_minute
        self._queued: ReadThroughCache[dict[uuid.UUID, Any]] = ReadThroughCache(cache_seconds, stale_on_error=True)
        # Live updates (wired to the live rooms by server/components/door.py): after a tick that
        # admitted accounts, `on_admitted(event_id, type_id, [(account, grant, grant expiry)])`;
        # then, at most once a second per queue, `on_positions(event_id, type_id, [(account,
        # position)])` for the first POSITION_PUSH_MAX waiting accounts (the others poll).
        self.on_admitted: Callable[[uuid.UUID, uuid.UUID, list[tuple[uuid.UUID, str, datetime]]],
                                   Awaitable[None]] | None = None
        self.on_positions: Callable[[uuid.UUID, uuid.UUID, list[tuple[uuid.UUID, int]]], Awaitable[None]] | None = None
        self._pushed_at: dict[uuid.UUID, float] = {}
        self.admitted_total = 0

    # --- organizers -------------------------------------------------------------------------------
    async def configure(self, principal: Principal, event_id: uuid.UUID, type_id: uuid.UUID,
                        body: QueueConfigIn) -> dict[str, Any]:
        grant_seconds = body.grant_seconds or self.default_grant_seconds
        max_per_ip = self.default_max_per_ip if body.max_per_ip is None else body.max_per_ip
        async with self.db.transaction("queue.configure") as conn:
            await authorize(conn, principal, Action.MANAGE_QUEUE, event_id)
            if not await store.type_exists(conn, event_id, type_id):
                raise not_found("ticket type")
            row = await store.put_config(conn, event_id=event_id, type_id=type_id, enabled=body.enabled,
                                         admit_per_minute=body.admit_per_minute, grant_seconds=grant_seconds,
                                         max_per_ip=max_per_ip)
        await self.store.configure(type_id, enabled=body.enabled, rate=body.admit_per_minute,
                                   grant_ms=grant_seconds * 1000)
        self._queued.invalidate(event_id)
        return await self._config_out(row)

    async def get_config(self, principal: Principal, event_id: uuid.UUID, type_id: uuid.UUID) -> dict[str, Any]:
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.MANAGE_QUEUE, event_id)
            row = await store.get_config(conn, type_id)
        if row is None or row["event_id"] != event_id:
            raise not_found("queue")
        return await self._config_out(row)

    async def _config_out(self, row: Any) -> dict[str, Any]:
        waiting, admitted = await self.store.waiting(row["ticket_type_id"])
        return {"ticket_type_id": row["ticket_type_id"], "enabled": row["enabled"],
                "admit_per_minute": row["admit_per_minute"], "grant_seconds": row["grant_seconds"],
                "max_per_ip": row["max_per_ip"], "waiting": waiting, "admitted": admitted}

    # --- buyers -----------------------------------------------------------------------------------
    async def _queued_types(self, event_id: uuid.UUID) -> dict[uuid.UUID, Any]:
        async def load() -> dict[uuid.UUID, Any]:
            async with self.db.connection() as conn:
                return {r["ticket_type_id"]: r for r in await store.configs_of_event(conn, event_id)}

        return await self._queued.get(event_id, load)

    async def _may_buy(self, principal: Principal, event_id: uuid.UUID) -> None:
        event = await self.tickets.orders.catalog.get(event_id)
        if event is None:
            raise not_found("event")
        if event.status != "published":
            async with self.db.connection() as conn:
                await authorize(conn, principal, Action.BUY_TICKETS, event_id)

    async def _throttle(self, principal: Principal) -> None:
        if self.polls_per_minute <= 0:
            return
        decision = await self.limiter.acquire(Limit(self.keys("q", "rl", principal.user_id), self.polls_per_minute, 60))
        if not decision.allowed:
            raise rate_limited(decision.retry_after, "too many queue requests")

    async def join(self, principal: Principal, event_id: uuid.UUID, type_id: uuid.UUID | None,
                   ip: str) -> dict[str, Any]:
        await self._may_buy(principal, event_id)
        await self._throttle(principal)
        queued = await self._queued_types(event_id)
        if type_id is None:
            if len(queued) != 1:
                raise FoyerError("validation_failed", "say which ticket type's queue to join",
                                 details=[{"field": "ticket_type_id", "message": "required for this event"}])
            type_id = next(iter(queued))
        cfg = queued.get(type_id)
        if cfg is None:
            return self._open(event_id, type_id)
        state, value, rank = await self.store.join(type_id, principal.user_id, ip=ip, max_per_ip=cfg["max_per_ip"])
        if state == "ip_limited":
            raise rate_limited(60, "too many places in this queue from your network")
        return self._answer(event_id, type_id, principal.user_id, cfg, state, value, rank,
                            joined_us=value if state == "waiting" else None)

    async def status(self, principal: Principal, event_id: uuid.UUID, token: str) -> dict[str, Any]:
        claims = self.signer.verify("Q", token)
        if claims is None or claims[0] != event_id or claims[2] != principal.user_id:
            raise not_found("queue token")
        await self._throttle(principal)
        _event, type_id, user_id, joined_us = claims
        cfg = (await self._queued_types(event_id)).get(type_id)
        if cfg is None:
            return self._open(event_id, type_id)
        state, value, rank = await self.store.status(type_id, user_id, joined_us)
        return self._answer(event_id, type_id, user_id, cfg, state, value, rank, joined_us=joined_us)

    def _open(self, event_id: uuid.UUID, type_id: uuid.UUID) -> dict[str, Any]:
        """No queue for this type (never, or turned off): buy directly."""
        return {"event_id": event_id, "ticket_type_id": type_id, "status": "open", "token": None, "position": None}

    def _answer(self, event_id: uuid.UUID, type_id: uuid.UUID, user_id: uuid.UUID, cfg: Any, state: str, value: int,
                rank: int, *, joined_us: int | None) -> dict[str, Any]:
        rate = cfg["admit_per_minute"]
        out: dict[str, Any] = {"event_id": event_id, "ticket_type_id": type_id, "admit_per_minute": rate}
        if joined_us is not None:
            out["token"] = self.signer.sign("Q", event_id, type_id, user_id, joined_us)
        if state == "admitted":
            expires = datetime.fromtimestamp(value / 1000, UTC)
            if value <= time.time() * 1000:
                out.update(status="expired", position=None, grant=None, grant_expires_at=expires)
            else:
                out.update(status="admitted", position=0, grant_expires_at=expires,
                           grant=self.signer.sign("G", event_id, type_id, user_id, value))
            out.setdefault("token", None)
            return out
        position = rank + 1
        out.update(status="waiting", position=position, eta_seconds=math.ceil(position * 60 / rate))
        return out

    # --- the order path -------------------------------------------------------------------------------
    async def pre_hold(self, ctx: HoldContext) -> None:
        """Every queued type in the order needs a valid grant of this account (no I/O when warm)."""
        queued = await self._queued_types(ctx.event.id)
        if not queued:
            return
        wanted = [ln.ticket_type_id for ln in ctx.plan.lines if ln.ticket_type_id in queued]
        if not wanted:
            return
        grants = [v for k, v in ctx.headers.items() if k.lower() == GRANT_HEADER.lower()]
        allowed: set[uuid.UUID] = set()
        now_ms = time.time() * 1000
        for header in grants:
            for token in header.split(","):
                claims = self.signer.verify("G", token)
                if claims and claims[0] == ctx.event.id and claims[2] == ctx.principal.user_id and claims[3] > now_ms:
                    allowed.add(claims[1])
        for type_id in wanted:
            if type_id not in allowed:
                raise FoyerError("queue_required", "this ticket type is sold through a waiting room: join the queue",
                                 details={"ticket_type_id": str(type_id), "queue": f"/api/events/{ctx.event.id}/queue"})

    # --- the admitter -------------------------------------------------------------------------------
    async def sync_configs(self) -> dict[uuid.UUID, uuid.UUID]:
        """Mirror the enabled queues from PostgreSQL into Redis; {type id: event id}."""
        async with self.db.connection() as conn:
            rows = await store.enabled_configs(conn)
        active = set(await self.store.active())
        for r in rows:
            await self.store.configure(r["ticket_type_id"], enabled=True, rate=r["admit_per_minute"],
                                       grant_ms=r["grant_seconds"] * 1000)
        for stale in active - {r["ticket_type_id"] for r in rows}:
            await self.store.configure(stale, enabled=False, rate=1, grant_ms=1000)
        return {r["ticket_type_id"]: r["event_id"] for r in rows}

    async def tick_once(self, events: dict[uuid.UUID, uuid.UUID]) -> int:
        admitted = 0
        active = await self.store.active()
        if any(t not in events for t in active):  # a queue turned on since the last sync
            events.update(await self.sync_configs())
        for type_id in active:
            accounts, expires_ms = await self.store.tick(type_id)
            event_id = events.get(type_id)
            if not accounts or event_id is None:
                continue
            admitted += len(accounts)
            try:
                if self.on_admitted is not None:
                    expires = datetime.fromtimestamp(expires_ms / 1000, UTC)
                    await self.on_admitted(event_id, type_id, [
                        (a, self.signer.sign("G", event_id, type_id, a, expires_ms), expires) for a in accounts])
                if self.on_positions is not None and time.monotonic() - self._pushed_at.get(type_id, 0) >= 1.0:
                    self._pushed_at[type_id] = time.monotonic()
                    head = await self.store.head(type_id, POSITION_PUSH_MAX)
                    await self.on_positions(event_id, type_id, [(a, i + 1) for i, a in enumerate(head)])
            except Exception:
                log.exception("queue live notification failed")
        self.admitted_total += admitted
        return admitted

    async def admitter(self, tick_s: float, sync_s: float = 5.0, stop: asyncio.Event | None = None) -> None:
        """Background loop on every node; capped jittered backoff on failure.

        Stops when cancelled, even if a client library swallowed the cancellation on its way
        (the task's pending cancel request, or `stop`, is checked on every round)."""
        failures = 0
        events: dict[uuid.UUID, uuid.UUID] = {}
        last_sync = 0.0
        me = asyncio.current_task()
        while True:
            if (stop is not None and stop.is_set()) or (me is not None and me.cancelling()):
                raise asyncio.CancelledError
            try:
                if time.monotonic() - last_sync > sync_s:
                    events = await self.sync_configs()
                    last_sync = time.monotonic()
                await self.tick_once(events)
                failures = 0
                await asyncio.sleep(tick_s * (0.9 + 0.2 * random.random()))
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("queue admitter failed (%d in a row)", failures)
                await asyncio.sleep(min(30.0, tick_s * 2 ** failures) * (0.5 + random.random()))
