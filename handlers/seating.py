"""Reserved seating over HTTP: seat maps per ticket type (organizers), seat status (buyers), an
order's seats. Seats are picked in `POST /api/events/{id}/orders` (`items[].seat_ids`) or given
best-available there."""

from __future__ import annotations

import uuid

import msgspec
from aiohttp import web

from domain.seating import BlockIn, SeatMapIn
from handlers.api import ApiRequest, Router
from handlers.checkin import door
from handlers.orders import services as ticket_services

router = Router("seating", "Reserved seating: seat maps, seat status, best available.")

_PATH = "/api/events/{event_id}/ticket-types/{ticket_type_id}/seat-map"


class SeatOut(msgspec.Struct):
    id: uuid.UUID
    label: str
    position: int
    status: str  # available | held | sold | blocked


class RowOut(msgspec.Struct):
    label: str
    seats: list[SeatOut]


class SectionOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    rank: int
    rows: list[RowOut]


class SeatMapOut(msgspec.Struct):
    id: uuid.UUID
    ticket_type_id: uuid.UUID
    name: str
    counts: dict[str, int]
    sections: list[SectionOut]


class BlockOut(msgspec.Struct):
    changed: int
    capacity: int


class OrderSeatOut(msgspec.Struct):
    ticket_type_id: uuid.UUID
    seat_index: int
    id: uuid.UUID
    section: str
    row: str
    label: str


@router.put(_PATH, summary="Create or replace a ticket type's seat map (organizers)", body=SeatMapIn,
            response=SeatMapOut, errors=("not_found", "forbidden", "validation_failed", "conflict"))
async def put_seat_map(req: ApiRequest) -> dict:
    """Sections (lower `rank` is better), rows (front first) and seats (`seats: n` labels them 1..n,
    or `seat_labels`; neighbours in the list are adjacent). Only while nothing of the type is sold
    or held (`conflict`). The type's capacity becomes the number of seats not `blocked`."""
    return await door(req).seating.put_map(req.principal, req.params["event_id"], req.params["ticket_type_id"],
                                           req.body)


@router.get(_PATH, summary="A ticket type's seat map with each seat's status", auth="optional",
            response=SeatMapOut, errors=("not_found",))
async def get_seat_map(req: ApiRequest) -> dict:
    return await door(req).seating.get_map(req.principal, req.params["event_id"], req.params["ticket_type_id"])


@router.delete(_PATH, summary="Remove a seat map (organizers; nothing sold or held)", status=204,
               errors=("not_found", "forbidden", "conflict"))
async def delete_seat_map(req: ApiRequest) -> None:
    await door(req).seating.delete_map(req.principal, req.params["event_id"], req.params["ticket_type_id"])


@router.post(_PATH + "/block", summary="Take free seats off sale or put them back (organizers)", body=BlockIn,
             response=BlockOut, errors=("not_found", "forbidden", "seat_unavailable", "validation_failed"))
async def block_seats(req: ApiRequest) -> dict:
    return await door(req).seating.block(req.principal, req.params["event_id"], req.params["ticket_type_id"],
                                         req.body)


@router.get("/api/orders/{order_id}/seats", summary="The seats of an order (its buyer, or the event's organizers)",
            response=list[OrderSeatOut], errors=("not_found", "forbidden", "two_factor_required"))
async def order_seats(req: ApiRequest) -> list:
    order = await ticket_services(req).payments.visible_order(req.principal, req.params["order_id"])
    return await door(req).seating.order_seats(order.id)


__all__ = ["router", "web"]
