"""The ticketing services of one node, filled in by the component's lifespan once PostgreSQL and
Redis are connected (handlers read them through `handlers.orders.TICKETS`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.errors import FoyerError


@dataclass
class TicketServices:
    orders: Any = None  # domain.tickets.ordering.OrderService
    admin: Any = None  # domain.tickets.manage.CatalogAdmin
    payments: Any = None  # domain.tickets.payments.PaymentService
    holders: Any = None  # domain.tickets.holders.TicketHolders
    gate: Any = None  # storage.inventory.Gate
    keys: Any = None  # domain.tickets.keys.EventKeys

    def ready(self) -> TicketServices:
        if self.orders is None:
            raise FoyerError("unavailable", "ticket sales are starting, try again")
        return self
