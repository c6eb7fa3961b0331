"""Rows and values of ticket sales (frozen dataclasses), shared by storage, domain and handlers."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

KINDS = ("general", "vip", "early_bird", "free", "donation")
ACTIVE_ORDER_STATUSES = ("held", "paid", "confirmed")
SOLD_ORDER_STATUSES = ("paid", "confirmed")


@dataclass(frozen=True, slots=True)
class TicketType:
    id: uuid.UUID
    event_id: uuid.UUID
    name: str
    description: str
    kind: str
    price_cents: int
    currency: str
    capacity: int
    sold: int
    held: int
    min_per_order: int
    max_per_order: int
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    visibility: str
    access_code_hash: bytes | None
    quota_id: uuid.UUID | None
    position: int
    status: str
    created_at: datetime

    @property
    def available(self) -> int:
        return max(0, self.capacity - self.sold - self.held)

    @classmethod
    def from_record(cls, r: Any) -> TicketType:
        return cls(**{f: r[f] for f in cls.__slots__})  # type: ignore[attr-defined]

    def public(self) -> dict[str, Any]:
        """The API shape: never the access code hash."""
        return {
            "id": self.id, "event_id": self.event_id, "name": self.name, "description": self.description,
            "kind": self.kind, "price_cents": self.price_cents, "currency": self.currency,
            "capacity": self.capacity, "sold": self.sold, "held": self.held, "available": self.available,
            "min_per_order": self.min_per_order, "max_per_order": self.max_per_order,
            "sale_starts_at": self.sale_starts_at, "sale_ends_at": self.sale_ends_at,
            "visibility": self.visibility, "quota_id": self.quota_id, "position": self.position,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class Quota:
    id: uuid.UUID
    event_id: uuid.UUID
    name: str
    capacity: int
    sold: int
    held: int

    @property
    def available(self) -> int:
        return max(0, self.capacity - self.sold - self.held)

    def public(self, type_ids: list[uuid.UUID] | None = None) -> dict[str, Any]:
        out = {"id": self.id, "event_id": self.event_id, "name": self.name, "capacity": self.capacity,
               "sold": self.sold, "held": self.held, "available": self.available}
        if type_ids is not None:
            out["ticket_type_ids"] = type_ids
        return out


@dataclass(frozen=True, slots=True)
class SaleEvent:
    """What the order path needs to know about an event, cached in process memory."""

    id: uuid.UUID
    status: str
    owner_id: uuid.UUID
    title: str
    types: dict[uuid.UUID, TicketType]
    quotas: dict[uuid.UUID, Quota]
    loaded_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Line:
    """One line of an order being placed: `quantity` seats of one type at `unit_price_cents`."""

    ticket_type_id: uuid.UUID
    quantity: int
    unit_price_cents: int
    quota_id: uuid.UUID | None = None


@dataclass(slots=True)
class HoldRequest:
    """One buyer's hold, travelling through the gate and the group-commit batcher."""

    order_id: uuid.UUID
    event_id: uuid.UUID
    user_id: uuid.UUID
    lines: list[Line]
    total_cents: int
    currency: str
    confirm: bool  # free order: confirmed at once (sold, tickets issued) instead of held
    expires_at: datetime | None
    idempotency_key: str | None
    fingerprint: bytes
    response: bytes = b""  # the 201 body, stored for idempotent replays in the same transaction
    admission: Any = None  # the gate's admission (storage.inventory.Admission), settled after commit
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    """What the batch transaction decided for one request."""

    ok: bool
    code: str = ""  # sold_out | sale_closed | duplicate | a batch hook's code (e.g. seat_unavailable)
    ticket_type_id: uuid.UUID | None = None
    quota_id: uuid.UUID | None = None  # set when the shared quota, not the type, ran out
    message: str = ""  # batch hooks: the error message and details the buyer gets
    details: Any = None


class BatchHook(Protocol):
    """An extension of the group-commit transaction (storage.orders.place_batch), e.g. reserved
    seating and registration answers (domain/seating.py, domain/forms.py).

    `admit` runs after the ticket-type rows are locked (so it is serialized with every other
    writer of those types) and the seats counted, before anything is written; it gets those
    locked rows (`types`: id -> row with `event_id, avail, quota_id, status, price_cents,
    seated`) and returns the
    requests it refuses ({order_id: HoldOutcome(False, code, ...)}): their seats go back to the
    batch and the gate. `placed` runs after the granted orders and items are inserted, in the same
    transaction. Both see `HoldRequest.extra` (filled by pre-hold hooks) and may rewrite
    `HoldRequest.response` (the 201 body, stored for idempotent replays) in `admit`."""

    async def admit(self, conn: Any, requests: Sequence[HoldRequest],
                    types: Mapping[uuid.UUID, Any]) -> dict[uuid.UUID, HoldOutcome]: ...

    async def placed(self, conn: Any, requests: Sequence[HoldRequest]) -> None: ...


# A late payment re-acquiring an expired order (locked): True if the hook's resources (e.g. the
# order's seats) could be taken again, False to refund instead. Runs before the counters move.
ReacquireHook = Callable[[Any, "Order"], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Order:
    id: uuid.UUID
    event_id: uuid.UUID
    user_id: uuid.UUID
    status: str
    total_cents: int
    currency: str
    refunded_cents: int
    expires_at: datetime | None
    created_at: datetime
    paid_at: datetime | None
    items: tuple[Line, ...]

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "event_id": self.event_id, "status": self.status, "total_cents": self.total_cents,
            "currency": self.currency, "refunded_cents": self.refunded_cents, "created_at": self.created_at,
            "items": [{"ticket_type_id": i.ticket_type_id, "quantity": i.quantity,
                       "unit_price_cents": i.unit_price_cents} for i in self.items],
        }
        if self.status == "held":
            out["expires_at"] = self.expires_at
        if self.paid_at is not None:
            out["paid_at"] = self.paid_at
        return out


@dataclass(frozen=True, slots=True)
class Ticket:
    id: uuid.UUID
    event_id: uuid.UUID
    order_id: uuid.UUID
    ticket_type_id: uuid.UUID
    seat_no: int
    holder_id: uuid.UUID
    status: str
    generation: int
    code: str
    issued_at: datetime

    @classmethod
    def from_record(cls, r: Any) -> Ticket:
        return cls(**{f: r[f] for f in cls.__slots__})  # type: ignore[attr-defined]

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "event_id": self.event_id, "ticket_type_id": self.ticket_type_id,
                "order_id": self.order_id, "code": self.code, "status": self.status,
                "issued_at": self.issued_at}
