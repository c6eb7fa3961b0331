"""Order lifecycle after the hold: payment, webhooks, refunds, cancellations, ticket issue.

Guarantees:
- one payment per order (UNIQUE payments.order_id; the provider idempotency key is derived from
  the order id, so retries of `start_payment` reuse the same intent);
- webhooks: the signature is verified by the provider adapter (400 `invalid_signature`);
  `payment_events` dedupes by provider event id inside the applying transaction; the
  transitions are order-independent (a `payment_failed` after `succeeded` changes nothing, a
  `succeeded` after `failed` still pays);
- pending -> paid exactly once: the order row is locked and only `held` (or a re-acquirable
  `expired`) moves to `paid`; tickets are issued in that same transaction;
- a late payment for an expired hold re-acquires the seats if they are still free, else the
  money is refunded automatically (after commit, provider idempotency key `refund:<id>`);
- refunds and cancellations void tickets and return seats in one transaction, then call the
  provider; the outcome is recorded on the `refunds` row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from domain.errors import FoyerError, not_found
from domain.identity import Principal
from domain.policy import Action, authorize, load_access
from domain.tickets.keys import EventKeys
from domain.tickets.models import Line, Order
from domain.tickets.ordering import OrderService
from storage import orders as order_store
from storage import payments as pay_store
from storage import tickets as ticket_store
from storage.db import Database
from storage.orders import Released

log = logging.getLogger("foyer.tickets.payments")


class PaymentService:
    refunds: Any = None  # domain.tickets.refunds.RefundRetrier, set by the component
    def __init__(self, *, db: Database, orders: OrderService, keys: EventKeys, provider: Any) -> None:
        self.db = db
        self.orders = orders
        self.keys = keys
        self.provider = provider  # integrations.payments.PaymentProvider

    # --- reading --------------------------------------------------------------------------------
    async def visible_order(self, principal: Principal | None, order_id: uuid.UUID, *,
                            action: Action = Action.VIEW_ORDERS, buyer_may: bool = True) -> Order:
        """The order if the caller bought it (and `buyer_may`) or may `action` on its event;
        `not_found` when the caller may not even see it."""
        order = await self.orders.get(order_id)
        if order is None or principal is None:
            raise not_found("order")
        if order.user_id == principal.user_id and buyer_may:
            return order
        async with self.db.connection() as conn:
            access = await load_access(conn, principal, order.event_id)
        if not access.can(Action.VIEW_EVENT) or not access.is_staff:
            raise not_found("order")
        if not access.can(action):
            from domain.policy import decide

            decide(access, action)  # raises the precise forbidden / two_factor_required
        return order

    async def orders_of(self, user_id: uuid.UUID) -> list[Order]:
        async with self.db.connection() as conn:
            return await order_store.orders_of_user(conn, user_id)

    async def list_refunds(self, principal: Principal, event_id: uuid.UUID, status: str | None) -> list[dict]:
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_ORDERS, event_id)
            return [dict(r) for r in await pay_store.list_refunds(conn, event_id, status=status)]

    # --- cancellation and refunds --------------------------------------------------------------
    async def cancel(self, principal: Principal, order_id: uuid.UUID, *, reason: str = "") -> Order:
        order = await self.orders.get(order_id)
        if order is None:
            raise not_found("order")
        own = order.user_id == principal.user_id
        if not (own and order.status == "held"):
            try:
                order = await self.visible_order(principal, order_id, action=Action.REFUND_ORDERS, buyer_may=False)
            except FoyerError as exc:
                if own and exc.code == "not_found":  # buyers may cancel only their held orders
                    raise FoyerError("invalid_state", f"the order is {order.status}") from None
                raise
        return await self._cancel(order_id, by=principal.user_id, may_refund=not own,
                                  reason=reason or ("cancelled by organizer" if not own else ""))

    async def cancel_for_cancelled_event(self, order_id: uuid.UUID, *, reason: str) -> Order | None:
        """System action after the event itself was cancelled (already authorized then): a held
        order is cancelled, a paid one cancelled and refunded in full. Orders no longer open are
        left as they are, so running this twice for one order changes nothing."""
        try:
            return await self._cancel(order_id, by=None, may_refund=True, reason=reason)
        except FoyerError as exc:
            if exc.code == "invalid_state":
                return None
            raise

    async def _cancel(self, order_id: uuid.UUID, *, by: uuid.UUID | None, may_refund: bool, reason: str) -> Order:
        refund = None
        async with self.db.transaction("orders.cancel") as conn:
            order = await order_store.get_order(conn, order_id, for_update=True)
            if order is None:
                raise not_found("order")
            if order.status == "held":
                released = await order_store.move_counters(
                    conn, ((ln.ticket_type_id, -ln.quantity, 0) for ln in order.items))
            elif order.status in ("paid", "confirmed") and may_refund:
                released, refund = await self._void_and_refund(conn, order, None, None, by, reason)
            else:
                raise FoyerError("invalid_state", f"the order is {order.status}")
            await order_store.set_status(conn, order.id, "cancelled",
                                         refunded_cents=order.total_cents if refund else None)
            await order_store.append_outbox(conn, [("order.cancelled", order.event_id, order_store.order_fact(
                order, previous_status=order.status, by=str(by) if by else "system", reason=reason))])
        await self.orders.after_release(released or Released())
        if refund is not None:
            await self._send_refund(refund)
        result = await self.orders.get(order_id)
        assert result is not None
        return result

    async def refund(self, principal: Principal, order_id: uuid.UUID, *, amount_cents: int | None,
                     ticket_ids: Sequence[uuid.UUID] | None, reason: str) -> Order:
        """Full (no amount, no tickets) or partial refund by an organizer. Tickets named are void
        and their seats return; a refund reaching the total voids every ticket (`refunded`)."""
        await self.visible_order(principal, order_id, action=Action.REFUND_ORDERS, buyer_may=False)
        async with self.db.transaction("orders.refund") as conn:
            order = await order_store.get_order(conn, order_id, for_update=True)
            assert order is not None
            if order.status not in ("paid", "confirmed"):
                raise FoyerError("invalid_state", f"the order is {order.status}")
            released, refund = await self._void_and_refund(conn, order, amount_cents, ticket_ids,
                                                           principal.user_id, reason or "refund")
        await self.orders.after_release(released)
        if refund is not None:
            await self._send_refund(refund)
        result = await self.orders.get(order_id)
        assert result is not None
        return result

    async def _void_and_refund(self, conn: Any, order: Order, amount: int | None,
                               ticket_ids: Sequence[uuid.UUID] | None, by: uuid.UUID | None,
                               reason: str) -> tuple[Released, dict | None]:
        remaining = order.total_cents - order.refunded_cents
        full = amount is None and not ticket_ids
        if ticket_ids:
            owned = {t.id: t for t in await ticket_store.tickets_of_order(conn, order.id) if t.status == "valid"}
            if any(tid not in owned for tid in ticket_ids):
                raise FoyerError("validation_failed", "not a valid ticket of this order",
                                 details=[{"field": "ticket_ids", "message": "unknown or already void"}])
        voided = await ticket_store.void_tickets(conn, order.id, None if full else (ticket_ids or []))
        prices = {ln.ticket_type_id: ln.unit_price_cents for ln in order.items}
        if amount is None:
            amount = remaining if full else sum(prices[t.ticket_type_id] for t in voided)
        if amount > remaining or amount < 0:
            raise FoyerError("validation_failed", "refund exceeds what was paid",
                             details=[{"field": "amount_cents", "message": f"at most {remaining}"}])
        lines: dict[uuid.UUID, int] = {}
        for t in voided:
            lines[t.ticket_type_id] = lines.get(t.ticket_type_id, 0) + 1
        released = await order_store.move_counters(conn, ((tid, 0, -n) for tid, n in lines.items())) or Released()
        all_void = not await conn.fetchval("SELECT count(*) FROM tickets WHERE order_id = $1 AND status = 'valid'",
                                           order.id)
        refunded_total = order.refunded_cents + amount
        status = "refunded" if all_void and (refunded_total >= order.total_cents or order.total_cents == 0) else order.status
        await order_store.set_status(conn, order.id, status, refunded_cents=refunded_total)
        for holder in {t.holder_id for t in voided}:
            await ticket_store.drop_attendee_if_no_ticket(conn, order.event_id, holder)
        refund = None
        if amount > 0:
            refund = await pay_store.create_refund(conn, order.id, amount_cents=amount, reason=reason, created_by=by)
        await order_store.append_outbox(conn, [("order.refunded", order.event_id, order_store.order_fact(
            order, amount_cents=amount, refunded_cents=refunded_total, status=status,
            voided_ticket_ids=[str(t.id) for t in voided], reason=reason))])
        return released, refund

    async def _send_refund(self, refund: dict) -> None:
        """Ask the provider for the money back now (idempotent per refund id). A transient failure
        leaves it pending for the retry loop; a refusal fails it (domain/tickets/refunds.py)."""
        if self.refunds is None:
            raise RuntimeError("PaymentService.refunds is not set")
        await self.refunds.attempt(refund)

    # --- paying -------------------------------------------------------------------------------
    async def start_payment(self, principal: Principal, order_id: uuid.UUID) -> dict[str, Any]:
        """The order's one payment intent (created on first call, the same one on every retry)."""
        order = await self.orders.get(order_id)
        if order is None or order.user_id != principal.user_id:
            raise not_found("order")
        async with self.db.connection() as conn:
            existing = await pay_store.get_by_order(conn, order_id)
        if existing is None:
            if order.status != "held":
                raise FoyerError("invalid_state" if order.status != "expired" else "hold_expired",
                                 f"the order is {order.status}")
            intent = await self.provider.create_intent(
                amount_cents=order.total_cents, currency=order.currency, order_id=order.id,
                idempotency_key=f"order:{order.id}")
            async with self.db.transaction("payments.start") as conn:
                existing = await pay_store.ensure_payment(
                    conn, order_id=order.id, provider=self.provider.name, intent_id=intent.intent_id,
                    amount_cents=order.total_cents, currency=order.currency, client_secret=intent.client_secret)
        elif existing["status"] == "succeeded" or order.status in ("paid", "confirmed"):
            raise FoyerError("already_paid", "this order is paid")
        return {"payment_id": existing["id"], "order_id": order.id, "provider": existing["provider"],
                "intent_id": existing["intent_id"], "client_secret": existing["client_secret"],
                "amount_cents": existing["amount_cents"], "currency": existing["currency"],
                "status": existing["status"], "confirm_url": self.provider.confirm_url(existing["intent_id"]),
                "expires_at": order.expires_at}

    async def webhook(self, provider_name: str, payload: bytes, headers: Any) -> dict[str, Any]:
        """Verify, dedupe and apply one provider event (see module doc for the guarantees)."""
        if self.provider is None or provider_name != self.provider.name:
            raise not_found("webhook endpoint")
        event = self.provider.parse_webhook(payload, headers)
        refund: dict | None = None
        released = Released()
        async with self.db.transaction("payments.webhook") as conn:
            if not await pay_store.record_event(conn, provider_name, event.id, event.type):
                return {"received": True, "duplicate": True}
            if event.type.startswith("refund.") and event.refund_id:
                await pay_store.mark_refund_by_provider_id(conn, event.refund_id,
                                                           "succeeded" if event.refund_status == "succeeded"
                                                           else "failed" if event.refund_status == "failed" else "pending")
            elif event.type in ("payment_intent.succeeded", "payment_intent.payment_failed") and event.intent_id:
                found = await pay_store.get_by_intent(conn, provider_name, event.intent_id)
                if found is None:
                    log.warning("webhook %s for unknown intent %s ignored", event.id, event.intent_id)
                    return {"received": True, "ignored": "unknown intent"}
                order = await order_store.get_order(conn, found["order_id"], for_update=True)
                payment = await pay_store.get_by_order(conn, found["order_id"], for_update=True)
                assert order is not None and payment is not None
                if event.type == "payment_intent.payment_failed":
                    if payment["status"] == "pending":
                        await pay_store.set_status(conn, payment["id"], "failed")
                elif payment["status"] in ("pending", "failed"):
                    if event.amount_cents != payment["amount_cents"] or (event.currency or "").upper() != payment["currency"]:
                        raise FoyerError("bad_request", "amount or currency does not match the payment")
                    await pay_store.set_status(conn, payment["id"], "succeeded")
                    refund, released = await self._paid(conn, order)
        await self.orders.after_release(released)
        if refund is not None:
            await self._send_refund(refund)
        return {"received": True}

    async def _paid(self, conn: Any, order: Order) -> tuple[dict | None, Released]:
        """Money arrived for `order` (locked). held -> paid; expired -> paid if seats are free
        again; otherwise the payment is refunded in full (order `refunded`)."""
        if order.status in ("paid", "confirmed", "refunded"):
            return None, Released()
        released = None
        if order.status == "held":
            released = await order_store.move_counters(
                conn, ((ln.ticket_type_id, -ln.quantity, ln.quantity) for ln in order.items))
        elif order.status == "expired":
            # Door hooks (e.g. the order's reserved seats) first: if they cannot be taken back, refund.
            if all([await hook(conn, order) for hook in self.orders.reacquire_hooks]):
                released = await order_store.move_counters(
                    conn, ((ln.ticket_type_id, 0, ln.quantity) for ln in order.items), require_available=True)
        if released is None:  # cancelled, or expired and the seats are gone
            await order_store.set_status(conn, order.id, "refunded", refunded_cents=order.total_cents)
            refund = await pay_store.create_refund(conn, order.id, amount_cents=order.total_cents,
                                                   reason=f"paid after the order was {order.status}", created_by=None)
            refund["intent_id"] = (await pay_store.get_by_order(conn, order.id))["intent_id"]
            await order_store.append_outbox(conn, [("order.refunded", order.event_id, order_store.order_fact(
                order, amount_cents=order.total_cents, refunded_cents=order.total_cents, status="refunded",
                voided_ticket_ids=[], reason="late_payment"))])
            return refund, Released()
        await order_store.set_status(conn, order.id, "paid", paid=True)
        rows = await self.issue(conn, order)
        await order_store.append_outbox(conn, [
            ("order.paid", order.event_id, order_store.order_fact(order, previous_status=order.status)),
            *order_store.issued_facts(rows)])
        return None, released  # held -> sold is neutral for the gate; a re-acquired expiry takes seats

    # --- issuing (shared by free orders and payments) -------------------------------------------
    async def issue(self, conn: Any, order: Order) -> list[tuple[Any, ...]]:
        signer = await self.keys.signer(order.event_id)
        rows = order_store.issue_rows(signer, order.event_id, order.id, order.user_id, order.items)
        await ticket_store.insert_tickets(conn, rows)
        await ticket_store.add_attendees(conn, [(order.event_id, order.user_id)])
        return rows


def lines_of(order: Order) -> list[Line]:
    return list(order.items)
