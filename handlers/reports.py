"""Organizer views over HTTP: orders, attendees, per-type sales, revenue, CSV exports.

All of them need the event's organizer role (or admin) with 2FA (domain/policy.py:
VIEW_ORDERS, VIEW_ATTENDEES, VIEW_REVENUE); other callers get not_found / forbidden."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web

from domain.reports import AttendeesQuery, OrdersQuery
from handlers.api import ApiRequest, Router
from handlers.checkin import door

router = Router("reports", "Organizer views: orders, attendees, sales per ticket type, revenue, CSV exports.")

_ERRORS = ("not_found", "forbidden", "two_factor_required", "validation_failed")


class PersonOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    email: str


class OrderRowOut(msgspec.Struct):
    id: uuid.UUID
    status: str
    total_cents: int
    currency: str
    refunded_cents: int
    created_at: datetime
    buyer: PersonOut
    items: list[dict[str, Any]]
    paid_at: datetime | None = None


class OrdersPage(msgspec.Struct):
    items: list[OrderRowOut]
    next_cursor: str | None = None


class AttendeeOut(msgspec.Struct):
    ticket_id: uuid.UUID
    status: str
    ticket_type_id: uuid.UUID
    ticket_type: str
    order_id: uuid.UUID
    issued_at: datetime
    holder: PersonOut
    answers: dict[str, Any]
    checkin: dict[str, Any]
    seat: dict[str, Any] | None = None


class AttendeesPage(msgspec.Struct):
    items: list[AttendeeOut]
    questions: list[dict[str, Any]]
    next_cursor: str | None = None


class SalesOut(msgspec.Struct):
    event_id: uuid.UUID
    ticket_types: list[dict[str, Any]]
    quotas: list[dict[str, Any]]
    totals: dict[str, int]


class RevenueOut(msgspec.Struct):
    event_id: uuid.UUID
    currencies: list[dict[str, Any]]
    ticket_types: list[dict[str, Any]]


@router.get("/api/events/{event_id}/orders", summary="The event's orders, newest first (organizers, 2FA)",
            query=OrdersQuery, response=OrdersPage, errors=_ERRORS)
async def list_orders(req: ApiRequest) -> dict:
    """Filters: `status`, `ticket_type_id`, `created_from`/`created_to`, `email` (part of the
    buyer's email, any case). Pages: pass `next_cursor` as `cursor`."""
    return await door(req).reports.orders(req.principal, req.params["event_id"], req.query)


@router.get("/api/events/{event_id}/attendees", summary="Ticket holders with answers, seats, check-in state",
            query=AttendeesQuery, response=AttendeesPage, errors=_ERRORS)
async def list_attendees(req: ApiRequest) -> dict:
    return await door(req).reports.attendees(req.principal, req.params["event_id"], req.query)


@router.get("/api/events/{event_id}/sales", summary="Per ticket type: capacity, sold, held, available",
            response=SalesOut, errors=_ERRORS)
async def sales(req: ApiRequest) -> dict:
    return await door(req).reports.sales(req.principal, req.params["event_id"])


@router.get("/api/events/{event_id}/revenue", summary="Gross, refunded and net revenue per currency and type",
            response=RevenueOut, errors=_ERRORS)
async def revenue(req: ApiRequest) -> dict:
    return await door(req).reports.revenue(req.principal, req.params["event_id"])


async def _stream(req: ApiRequest, rows: Any, name: str) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                       "Content-Disposition": f'attachment; filename="{name}"',
                                       "Cache-Control": "private, no-store"})
    await resp.prepare(req.request)
    chunk: list[bytes] = []
    size = 0
    async for line in rows:
        chunk.append(line)
        size += len(line)
        if size >= 64 * 1024:
            await resp.write(b"".join(chunk))
            chunk, size = [], 0
    if chunk:
        await resp.write(b"".join(chunk))
    await resp.write_eof()
    return resp


@router.get("/api/events/{event_id}/exports/orders.csv", summary="Orders as CSV (streamed)", query=OrdersQuery,
            content_type="text/csv", errors=_ERRORS)
async def export_orders(req: ApiRequest) -> web.StreamResponse:
    """Same filters as the orders list (no paging). Cells that a spreadsheet would run as a formula
    (starting with = + - @) are prefixed with a quote."""
    rows = await door(req).reports.orders_csv(req.principal, req.params["event_id"], req.query)
    return await _stream(req, rows, f"orders-{req.params['event_id']}.csv")


@router.get("/api/events/{event_id}/exports/attendees.csv", summary="Attendees with form answers as CSV (streamed)",
            query=AttendeesQuery, content_type="text/csv", errors=_ERRORS)
async def export_attendees(req: ApiRequest) -> web.StreamResponse:
    """One column per registration question; same filters as the attendee list."""
    rows = await door(req).reports.attendees_csv(req.principal, req.params["event_id"], req.query)
    return await _stream(req, rows, f"attendees-{req.params['event_id']}.csv")
