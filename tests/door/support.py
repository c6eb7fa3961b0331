"""Builders for door tests: an event with tickets, team members, scans."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.api import Api, User
from tests.tickets.support import Sale, create_event, create_type, key, order


@dataclass
class Door:
    api: Api
    sale: Sale
    free_type: dict
    tickets: dict[str, list[dict]] = field(default_factory=dict)  # buyer id -> tickets

    @property
    def event_id(self) -> str:
        return self.sale.event_id

    @property
    def organizer(self) -> User:
        return self.sale.organizer


async def add_member(api: Api, door: Door, user: User, role: str) -> None:
    path = {"staff": "staff", "moderator": "moderators", "organizer": "organizers"}[role]
    status, body = await api.post(f"/api/events/{door.event_id}/{path}", user=door.organizer,
                                  json={"user_id": user.id})
    assert status in (200, 201), (status, body)


async def buy_free(api: Api, door: Door, buyer: User, quantity: int = 1, type_id: str | None = None) -> list[dict]:
    status, body = await order(api, door.sale, buyer,
                               [{"ticket_type_id": type_id or door.free_type["id"], "quantity": quantity}], key=key())
    assert status == 201 and body["status"] == "confirmed", (status, body)
    status, mine = await api.get("/api/me/tickets", user=buyer)
    assert status == 200
    tickets = [t for t in mine if t["order_id"] == body["id"]]
    door.tickets.setdefault(buyer.id, []).extend(tickets)
    return tickets


async def new_door(api: Api, db_or_dsn: Any, *, capacity: int = 100, organizer: User | None = None) -> Door:
    organizer = organizer or await api.register_2fa("Organizer")
    sale = Sale(await create_event(db_or_dsn, organizer), organizer)
    free = await create_type(api, sale, name="Free", kind="free", price_cents=0, capacity=capacity, max_per_order=10)
    return Door(api, sale, free)


def now_iso(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def nonce() -> str:
    return uuid.uuid4().hex


async def scan(api: Api, door: Door, user: User, code: str, *, gate: str = "A", direction: str = "in",
               scanned_at: str | None = None, nonce_: str | None = None) -> tuple[int, Any]:
    return await api.post(f"/api/events/{door.event_id}/checkins", user=user,
                          json={"code": code, "gate": gate, "nonce": nonce_ or nonce(),
                                "scanned_at": scanned_at or now_iso(), "direction": direction})
