"""Order rules checked before a hold reaches the gate: visibility, sale windows, limits, prices.

All of it runs on the cached `SaleEvent` (no I/O). `PreHoldHook`s registered on the order service
run next (waiting-room admission, registration answers, seat choice: they may do I/O); then the
gate. PostgreSQL re-checks what matters for safety (capacity, type still active) in the batch.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import msgspec

from domain.errors import FoyerError, field_error
from domain.identity import Principal
from domain.tickets.models import Line, SaleEvent, TicketType

Quantity = Annotated[int, msgspec.Meta(ge=1, le=1000)]


class OrderItemIn(msgspec.Struct, forbid_unknown_fields=True):
    ticket_type_id: uuid.UUID
    quantity: Quantity
    # reserved seating: the seats picked (as many as `quantity`); omitted: best available.
    # Checked by the seating pre-hold hook (domain/seating.py) and in the hold batch.
    seat_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=1000)] | None = None
    price_cents: Annotated[int, msgspec.Meta(ge=0, le=10**10)] | None = None  # donation types: amount per seat


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[OrderItemIn], msgspec.Meta(min_length=1, max_length=20)]
    access_code: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    # registration form answers by question id, checked by the forms pre-hold hook (domain/forms.py)
    answers: dict[str, Any] | None = None


@dataclass(slots=True)
class OrderPlan:
    lines: list[Line]
    total_cents: int
    currency: str
    confirm: bool  # free: confirmed at once


@dataclass(slots=True)
class HoldContext:
    """What a pre-hold hook sees; hooks raise FoyerError to refuse, or add to `extra`."""

    principal: Principal
    event: SaleEvent
    order: OrderIn
    plan: OrderPlan
    headers: Mapping[str, str]  # the request's headers (read only by the hooks that need one)
    extra: dict[str, Any] = field(default_factory=dict)


PreHoldHook = Callable[[HoldContext], Awaitable[None]]


def hash_access_code(code: str) -> bytes:
    return hashlib.sha256(b"foyer-access-code\x00" + code.strip().encode()).digest()


def _code_ok(t: TicketType, code: str | None) -> bool:
    if t.visibility == "public":
        return True
    return bool(code) and t.access_code_hash is not None and hmac.compare_digest(
        bytes(t.access_code_hash), hash_access_code(code or ""))


def visible_types(event: SaleEvent, access_code: str | None, *, staff: bool) -> list[TicketType]:
    return [t for t in sorted(event.types.values(), key=lambda t: (t.position, t.created_at))
            if t.status == "active" and (staff or _code_ok(t, access_code))]


def plan_order(event: SaleEvent, order: OrderIn, *, now: datetime, max_seats: int) -> OrderPlan:
    """Validate an order against the cached catalog; raise the stable error codes of issue 3."""
    seen: set[uuid.UUID] = set()
    lines: list[Line] = []
    currencies: set[str] = set()
    seats = 0
    for i, item in enumerate(order.items):
        where = f"items.{i}"
        t = event.types.get(item.ticket_type_id)
        if t is None or t.status != "active":
            raise field_error(f"{where}.ticket_type_id", "no such ticket type on sale for this event")
        if item.ticket_type_id in seen:
            raise field_error(f"{where}.ticket_type_id", "each ticket type may appear once per order")
        seen.add(item.ticket_type_id)
        if not _code_ok(t, order.access_code):
            raise FoyerError("access_code_required", "this ticket type needs a valid access code",
                             details={"ticket_type_id": str(t.id)})
        if t.sale_starts_at is not None and now < t.sale_starts_at:
            raise FoyerError("sale_not_open", "the sale of this ticket type has not started",
                             details={"ticket_type_id": str(t.id), "sale_starts_at": t.sale_starts_at.isoformat()})
        if t.sale_ends_at is not None and now >= t.sale_ends_at:
            raise FoyerError("sale_closed", "the sale of this ticket type is over", details={"ticket_type_id": str(t.id)})
        if not t.min_per_order <= item.quantity <= t.max_per_order:
            raise FoyerError("limit_exceeded", f"between {t.min_per_order} and {t.max_per_order} per order",
                             details={"field": f"{where}.quantity", "min": t.min_per_order, "max": t.max_per_order})
        price = t.price_cents
        if item.price_cents is not None:
            if t.kind != "donation":
                raise field_error(f"{where}.price_cents", "only donation tickets take a price")
            if item.price_cents < t.price_cents:
                raise field_error(f"{where}.price_cents", f"at least {t.price_cents}")
            price = item.price_cents
        seats += item.quantity
        currencies.add(t.currency)
        lines.append(Line(t.id, item.quantity, price, t.quota_id))
    if seats > max_seats:
        raise FoyerError("limit_exceeded", f"at most {max_seats} tickets per order",
                         details={"field": "items", "max": max_seats})
    if len(currencies) > 1:
        raise field_error("items", "all ticket types of one order must share a currency")
    total = sum(ln.quantity * ln.unit_price_cents for ln in lines)
    return OrderPlan(lines=lines, total_cents=total, currency=currencies.pop(), confirm=total == 0)
