"""Payments over HTTP: start (or resume) an order's payment, provider webhooks, organizer refunds."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from handlers.api import ApiRequest, Router
from handlers.orders import OrderOut, services

router = Router("payments", "Payment intents, provider webhooks, refunds.")


class PaymentOut(msgspec.Struct):
    payment_id: uuid.UUID
    order_id: uuid.UUID
    provider: str
    intent_id: str
    client_secret: str | None
    amount_cents: int
    currency: str
    status: str
    confirm_url: str | None = None
    expires_at: datetime | None = None


class RefundIn(msgspec.Struct, forbid_unknown_fields=True):
    amount_cents: Annotated[int, msgspec.Meta(ge=1)] | None = None
    ticket_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=1000)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


@router.post("/api/orders/{order_id}/payments", summary="Start paying a held order (one intent per order)",
             status=201, response=PaymentOut, errors=("not_found", "invalid_state", "hold_expired", "already_paid",
                                                      "payment_failed", "unavailable"))
async def start_payment(req: ApiRequest) -> dict:
    """Returns the provider's `client_secret` (and, for the sandbox, the `confirm_url`): the buyer's
    client confirms the payment with the processor directly, card numbers never reach Foyer.
    Calling again returns the same intent."""
    return await services(req).payments.start_payment(req.principal, req.params["order_id"])


@router.post("/api/payments/webhooks/{provider}", summary="Provider webhook (signed; deduplicated by event id)",
             auth="none", errors=("invalid_signature", "not_found", "bad_request"))
async def payment_webhook(req: ApiRequest) -> dict:
    """`Stripe-Signature: t=<unix>,v1=<HMAC-SHA256(secret, "<t>.<body>")>`; stale or wrong signatures
    are 400 `invalid_signature`. Replays answer 200 without effect."""
    return await services(req).payments.webhook(req.params["provider"], await req.request.read(), req.request.headers)


@router.post("/api/orders/{order_id}/refunds", summary="Refund an order in full or in part (organizers)",
             body=RefundIn, response=OrderOut, idempotency="orders.refund",
             errors=("not_found", "forbidden", "two_factor_required", "invalid_state", "validation_failed"))
async def refund_order(req: ApiRequest) -> dict:
    """No body fields: full refund (all tickets void, seats return, status `refunded`). `ticket_ids`:
    those tickets void and their seats return, amount defaults to their price. `amount_cents` alone:
    money back, tickets stay valid."""
    body: RefundIn = req.body
    order = await services(req).payments.refund(req.principal, req.params["order_id"], amount_cents=body.amount_cents,
                                                ticket_ids=body.ticket_ids, reason=body.reason)
    return order.public()


class RefundOut(msgspec.Struct):
    id: uuid.UUID
    order_id: uuid.UUID
    event_id: uuid.UUID
    amount_cents: int
    reason: str
    status: str
    attempts: int
    last_error: str | None = None
    provider_refund_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    next_attempt_at: datetime | None = None


class RefundsQuery(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["pending", "succeeded", "failed"] | None = None


@router.get("/api/events/{event_id}/refunds", summary="Refunds of the event, newest first (organizers)",
            query=RefundsQuery, response=list[RefundOut], errors=("not_found", "forbidden"))
async def list_refunds(req: ApiRequest) -> list:
    """`status=failed`: refunds the provider refused or that kept failing, with the reason in
    `last_error` (they need an organizer: pay back another way, or contact the buyer). `pending`
    ones are being retried with backoff (`attempts`, `next_attempt_at`)."""
    return await services(req).payments.list_refunds(req.principal, req.params["event_id"], req.query.status)
