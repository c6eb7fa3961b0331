"""Orders over HTTP: place a hold (group-committed, idempotent), read, list and cancel orders."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from aiohttp import web

from domain.tickets.rules import OrderIn
from domain.tickets.services import TicketServices
from handlers.api import ApiRequest, Router

router = Router("orders", "Orders: holds with expiry, free orders, cancellation.")
TICKETS: web.AppKey[TicketServices] = web.AppKey("foyer.tickets", TicketServices)


def services(req: ApiRequest) -> TicketServices:
    return req.app[TICKETS].ready()


class OrderItemOut(msgspec.Struct):
    ticket_type_id: uuid.UUID
    quantity: int
    unit_price_cents: int


class OrderOut(msgspec.Struct):
    id: uuid.UUID
    event_id: uuid.UUID
    status: str
    total_cents: int
    currency: str
    items: list[OrderItemOut]
    expires_at: datetime | None = None
    refunded_cents: int | None = None
    created_at: datetime | None = None
    paid_at: datetime | None = None


class CancelIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = ""


@router.post("/api/events/{event_id}/orders", summary="Place an order: hold seats (or confirm a free order)",
             status=201, body=OrderIn, response=OrderOut, headers=("Idempotency-Key",),
             errors=("sold_out", "sale_not_open", "sale_closed", "limit_exceeded", "access_code_required",
                     "not_found", "idempotency_key_reused", "idempotency_in_progress", "busy", "invalid_state"))
async def place_order(req: ApiRequest) -> web.Response:
    """Seats are held for `FOYER_HOLD_SECONDS` while the buyer pays; free orders are `confirmed` at once
    and their tickets issued. Repeating the request with the same `Idempotency-Key` returns the first
    response; the same key with a different body is 422 `idempotency_key_reused`; while the first
    is still running, 409 `idempotency_in_progress`."""
    orders = services(req).orders
    status, body = await orders.place(
        req.principal, req.params["event_id"], req.body, idempotency_key=req.header("Idempotency-Key"),
        headers=req.request.headers)
    return web.Response(body=body, status=status, content_type="application/json")


@router.get("/api/orders/{order_id}", summary="One order (its buyer, or the event's organizers)",
            response=OrderOut, errors=("not_found",))
async def get_order(req: ApiRequest) -> dict:
    order = await services(req).payments.visible_order(req.principal, req.params["order_id"])
    return order.public()


@router.get("/api/me/orders", summary="My orders, newest first", response=list[OrderOut])
async def my_orders(req: ApiRequest) -> list:
    return [o.public() for o in await services(req).payments.orders_of(req.user_id)]


@router.post("/api/orders/{order_id}/cancel", summary="Cancel an order (buyer: own held order; organizer: any)",
             body=CancelIn, response=OrderOut, idempotency="orders.cancel",
             errors=("not_found", "invalid_state", "forbidden", "two_factor_required"))
async def cancel_order(req: ApiRequest) -> dict:
    """A held order returns its seats; a paid order is refunded in full and its tickets void."""
    order = await services(req).payments.cancel(req.principal, req.params["order_id"], reason=req.body.reason)
    return order.public()
