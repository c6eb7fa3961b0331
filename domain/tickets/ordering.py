"""The order path: rules -> pre-hold hooks -> Redis gate -> group commit -> response.

`place` returns the raw (status, body) of the 201 so that idempotent replays are byte-identical.
Answers without PostgreSQL work: `sold_out` (gate), every rule violation (cached catalog),
`idempotency_in_progress` / `idempotency_key_reused` seen in the gate's marker. Replays of a
finished order read the stored response from PostgreSQL.

Expiry: a sweeper on every node (`sweep_once`, SKIP LOCKED) plus lazy expiry when an order is
read (`expire_if_due`); both return seats exactly once (storage.orders.expire_due).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import msgspec
import orjson

from domain.errors import FoyerError, not_found
from domain.identity import Principal
from domain.policy import Action, authorize
from domain.tickets.catalog import SaleCatalog
from domain.tickets.keys import EventKeys
from domain.tickets.models import BatchHook, HoldOutcome, HoldRequest, Order, ReacquireHook
from domain.tickets.rules import HoldContext, OrderIn, PreHoldHook, plan_order
from storage import idempotency
from storage import orders as order_store
from storage.db import Database
from storage.inventory import Admission, Gate, HoldBatcher
from storage.orders import ORDERS_SCOPE, Released

log = logging.getLogger("foyer.tickets.orders")


def _marker(prefix: str, fp: bytes) -> str:
    return f"{prefix}|{fp.hex()}"


class OrderService:
    def __init__(self, *, db: Database, gate: Gate, catalog: SaleCatalog, keys: EventKeys, hold_seconds: int,
                 max_seats: int, batch_max: int, batch_window_s: float, require_2fa: bool = True) -> None:
        self.db = db
        self.gate = gate
        self.catalog = catalog
        self.keys = keys
        self.hold_seconds = hold_seconds
        self.max_seats = max_seats
        self.pre_hold_hooks: list[PreHoldHook] = []
        # Door extension points (seating, registration forms; see domain.tickets.models.BatchHook):
        # run inside the group-commit transaction, and when a late payment re-acquires a hold.
        self.batch_hooks: list[BatchHook] = []
        self.reacquire_hooks: list[ReacquireHook] = []
        self.batcher = HoldBatcher(self._commit, max_batch=batch_max, window_s=batch_window_s)
        # The batcher commits one batch at a time, always on this connection: its prepared
        # statements (the batch's large write statement among them) are planned once, not once
        # per pooled connection during the first seconds of a drop.
        self._batch_tx = db.dedicated("orders.hold_batch")
        self.sold_out_answers = 0
        self.optimistic_batches = 0  # batches committed by place_batch_optimistic
        self._sold_out_bodies: dict[uuid.UUID | None, bytes] = {}

    # --- placing -------------------------------------------------------------------------------
    async def place(self, principal: Principal, event_id: uuid.UUID, order: OrderIn, *,
                    idempotency_key: str | None, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        event = await self.catalog.get(event_id)
        if event is None:
            raise not_found("event")
        if event.status != "published":  # rare: let the policy give the exact answer
            async with self.db.connection() as conn:
                await authorize(conn, principal, Action.BUY_TICKETS, event_id)
        now = datetime.now(UTC)
        plan = plan_order(event, order, now=now, max_seats=self.max_seats)
        key = idempotency.valid_key(idempotency_key)
        marker_key = self.gate.marker_key(principal.user_id, key) if key else None
        units = self.gate.units_for([(ln.ticket_type_id, ln.quota_id, ln.quantity) for ln in plan.lines])
        # Once sold out, most buyers are answered here: before the pre-hold hooks (a buyer without
        # a queue grant or an answer to a required question learns it is sold out, which is what
        # matters) and without the gate script.
        known = await self.gate.known_answer(event_id, units, marker_key=marker_key)
        if known is not None and known.result == "sold_out":
            return self._sold_out(plan.lines[0].ticket_type_id)
        fp = idempotency.fingerprint(ORDERS_SCOPE, str(event_id), msgspec.json.encode(order))
        if known is not None:  # seen: a retry (or a reuse) of a key this buyer used before
            assert key is not None
            return await self._seen(principal, event_id, order, key, fp, known, headers)
        extra: dict = {}
        if self.pre_hold_hooks:
            ctx = HoldContext(principal=principal, event=event, order=order, plan=plan, headers=headers or {})
            try:
                for hook in self.pre_hold_hooks:
                    await hook(ctx)
            except FoyerError:
                # A retry of an order that already succeeded gets its first answer, even if a hook
                # would refuse it now (queue grant expired, a required question added since).
                # Only refusals pay for this lookup; the happy path checks the key at the gate.
                if key is not None:
                    async with self.db.connection() as conn:
                        stored = await idempotency.lookup(conn, ORDERS_SCOPE, str(principal.user_id), key, fp)
                    if stored is not None:
                        return stored.status, stored.body
                raise
            extra = ctx.extra
        adm = await self.gate.admit(event_id, units, marker_key=marker_key, marker_value=_marker("p", fp))
        if adm.result == "seen":
            assert key is not None and marker_key is not None
            return await self._seen(principal, event_id, order, key, fp, adm, headers)
        if adm.result == "sold_out":
            return self._sold_out(plan.lines[0].ticket_type_id)
        order_id = uuid.uuid4()
        expires_at = None if plan.confirm else now + timedelta(seconds=self.hold_seconds)
        body = {"id": order_id, "event_id": event_id, "status": "confirmed" if plan.confirm else "held",
                "total_cents": plan.total_cents, "currency": plan.currency,
                "items": [{"ticket_type_id": ln.ticket_type_id, "quantity": ln.quantity,
                           "unit_price_cents": ln.unit_price_cents} for ln in plan.lines]}
        if expires_at is not None:
            body["expires_at"] = expires_at
        response = orjson.dumps(body, default=str)
        request = HoldRequest(
            order_id=order_id, event_id=event_id, user_id=principal.user_id, lines=plan.lines,
            total_cents=plan.total_cents, currency=plan.currency, confirm=plan.confirm, expires_at=expires_at,
            idempotency_key=key, fingerprint=fp, response=response, admission=adm, extra=extra)
        try:
            if plan.confirm:
                await self.keys.signer(event_id)
            outcome = await self.batcher.submit(request)
        except BaseException:
            await self.gate.compensate(adm)
            raise
        if outcome.ok:
            return 201, request.response  # batch hooks may have added to it (e.g. assigned seats)
        if outcome.code == "duplicate":
            assert key is not None
            return await self._replay(principal, key, fp)
        if outcome.code == "sold_out":
            return self._sold_out(outcome.ticket_type_id)
        raise FoyerError(outcome.code or "conflict", outcome.message or "the ticket type is not on sale",
                         details=outcome.details if outcome.details is not None
                         else {"ticket_type_id": str(outcome.ticket_type_id)})

    def _sold_out(self, ticket_type_id: uuid.UUID | None) -> tuple[int, bytes]:
        """409 `sold_out` as (status, body), the error envelope of DESIGN.md §3 pre-encoded per
        ticket type: the answer most buyers of a drop get, so it skips exception handling and
        JSON encoding. Counted in `sold_out_answers` (exported as foyer_tickets_sold_out_answers_total)."""
        self.sold_out_answers += 1
        body = self._sold_out_bodies.get(ticket_type_id)
        if body is None:
            error = FoyerError("sold_out", "sold out", details={"ticket_type_id": str(ticket_type_id)})
            body = orjson.dumps({"error": error.as_payload()})
            if len(self._sold_out_bodies) > 10_000:
                self._sold_out_bodies.clear()
            self._sold_out_bodies[ticket_type_id] = body
        return 409, body

    async def _seen(self, principal: Principal, event_id: uuid.UUID, order: OrderIn, key: str, fp: bytes,
                    adm: Admission, headers: Mapping[str, str] | None) -> tuple[int, bytes]:
        state, _, seen_fp = adm.seen.partition("|")
        if seen_fp != fp.hex():
            raise idempotency.reused()
        if state == "p":
            raise idempotency.in_progress()
        try:
            return await self._replay(principal, key, fp)
        except FoyerError as exc:
            if exc.code != "idempotency_in_progress":
                raise
        # The marker outlived its record (purged): forget it and treat the request as new.
        assert adm.marker_key is not None
        await self.gate.delete_marker(adm.marker_key)
        return await self.place(principal, event_id, order, idempotency_key=key, headers=headers)

    async def _replay(self, principal: Principal, key: str, fp: bytes) -> tuple[int, bytes]:
        async with self.db.connection() as conn:
            stored = await idempotency.lookup(conn, ORDERS_SCOPE, str(principal.user_id), key, fp)
        if stored is None:
            raise idempotency.in_progress()
        return stored.status, stored.body

    async def _commit(self, batch: list[HoldRequest]) -> dict[uuid.UUID, HoldOutcome]:
        """One group-commit transaction, then the gate is settled for the whole batch."""
        try:  # the common drop batch, with the type row locked only at the end (storage/orders.py)
            if not order_store.optimistic_fits(batch):
                raise order_store.NeedsLockFirst
            async with self._batch_tx.transaction() as conn:
                result = await order_store.place_batch_optimistic(
                    conn, batch, idempotency_ttl_seconds=idempotency.DEFAULT_TTL_SECONDS, hooks=self.batch_hooks)
            self.optimistic_batches += 1
        except order_store.NeedsLockFirst:  # rolled back: allocate under the lock
            async with self._batch_tx.transaction() as conn:
                result = await order_store.place_batch(
                    conn, batch, signer_for=self.keys.signer_cached,
                    idempotency_ttl_seconds=idempotency.DEFAULT_TTL_SECONDS, hooks=self.batch_hooks)
        await self.gate.settle([(r, result.outcomes[r.order_id]) for r in batch if r.order_id in result.outcomes],
                               result.type_available, result.quota_available,
                               marker_value=lambda r: _marker("d", r.fingerprint))
        return result.outcomes

    async def close(self) -> None:
        """Give the batcher's connection back to the pool (after `batcher.stop()`)."""
        await self._batch_tx.close()

    # --- reading, expiry ------------------------------------------------------------------------
    async def get(self, order_id: uuid.UUID) -> Order | None:
        order = await self.expire_if_due(order_id)
        if order is not None:
            return order
        async with self.db.connection() as conn:
            return await order_store.get_order(conn, order_id)

    async def expire_if_due(self, order_id: uuid.UUID) -> Order | None:
        """Lazy expiry: if this order is a lapsed hold, expire it now (exactly once); else None."""
        async with self.db.transaction("orders.expire_one") as conn:
            orders, released = await order_store.expire_due(conn, limit=1, order_id=order_id)
        await self.after_release(released)
        return orders[0] if orders else None

    async def sweep_once(self, limit: int = 500) -> int:
        async with self.db.transaction("orders.expire_sweep") as conn:
            orders, released = await order_store.expire_due(conn, limit=limit)
        await self.after_release(released)
        return len(orders)

    async def after_release(self, released: Released) -> None:
        if released:
            await self.gate.release(released.types, released.quotas)

    async def sweeper(self, interval_s: float) -> None:
        """Background loop on every node; capped jittered backoff on failure."""
        failures = 0
        while True:
            try:
                while await self.sweep_once() >= 500:
                    pass
                failures = 0
                await asyncio.sleep(interval_s * (0.8 + 0.4 * random.random()))
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("hold sweeper failed (%d in a row)", failures)
                await asyncio.sleep(min(30.0, interval_s * 2 ** failures) * (0.5 + random.random()))
