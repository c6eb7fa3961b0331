"""Organizer views: orders, attendees (with form answers, seats, check-in state), per-type
sold/held/available, revenue per currency, and CSV exports.

Every view is guarded by `domain.policy` (VIEW_ORDERS, VIEW_ATTENDEES, VIEW_REVENUE: organizers
with 2FA; admins): callers who may not see the event get `not_found`, team members without the
right get `forbidden`, organizers without 2FA `two_factor_required`.

CSV cells are made injection-safe (OWASP "CSV injection"): a cell starting with `=`, `+`, `-`,
`@`, tab or carriage return is prefixed with a single quote, so spreadsheets show it as text.
"""

from __future__ import annotations

import base64
import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson

from domain.errors import FoyerError
from domain.identity import Principal
from domain.policy import Action, authorize
from storage import reports as store
from storage.db import Database

_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
Limit = Annotated[int, msgspec.Meta(ge=1, le=500)]


class OrdersQuery(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["held", "paid", "confirmed", "expired", "cancelled", "refunded"] | None = None
    ticket_type_id: uuid.UUID | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    email: Annotated[str, msgspec.Meta(min_length=1, max_length=320)] | None = None
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    limit: Limit = 50


class AttendeesQuery(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["valid", "void"] | None = "valid"
    ticket_type_id: uuid.UUID | None = None
    checked_in: bool | None = None
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    limit: Limit = 50


def csv_safe(value: Any) -> str:
    """A CSV cell that spreadsheets will not evaluate as a formula."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(_DANGEROUS) else text


def csv_line(cells: Iterable[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([csv_safe(c) for c in cells])
    return out.getvalue().encode()


def _encode_cursor(ts: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([ts.isoformat(), str(row_id)])).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not cursor:
        return None
    try:
        ts, row_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(ts), uuid.UUID(row_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise FoyerError("validation_failed", "bad cursor",
                         details=[{"field": "cursor", "message": "use next_cursor from the previous page"}]) from None


def _filters(q: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(q, n) for n in names}


_ORDER_FILTERS = ("status", "ticket_type_id", "created_from", "created_to", "email")
_ATTENDEE_FILTERS = ("status", "ticket_type_id", "checked_in")


def _order_out(r: Any) -> dict[str, Any]:
    return {"id": r["id"], "status": r["status"], "total_cents": r["total_cents"], "currency": r["currency"],
            "refunded_cents": r["refunded_cents"], "created_at": r["created_at"], "paid_at": r["paid_at"],
            "buyer": {"id": r["buyer_id"], "name": r["buyer_name"], "email": r["buyer_email"]},
            "items": r["items"]}


def _attendee_out(r: Any) -> dict[str, Any]:
    return {"ticket_id": r["id"], "status": r["status"], "ticket_type_id": r["ticket_type_id"],
            "ticket_type": r["ticket_type"], "order_id": r["order_id"], "issued_at": r["issued_at"],
            "holder": {"id": r["holder_id"], "name": r["holder_name"], "email": r["holder_email"]},
            "seat": r["seat"], "answers": r["answers"],
            "checkin": {"checked_in": r["first_checkin"] is not None, "inside": r["inside"],
                        "first": r["first_checkin"]}}


class Reports:
    def __init__(self, *, db: Database) -> None:
        self.db = db

    async def _authorize(self, principal: Principal, event_id: uuid.UUID, action: Action) -> None:
        async with self.db.connection() as conn:
            await authorize(conn, principal, action, event_id)

    async def orders(self, principal: Principal, event_id: uuid.UUID, q: OrdersQuery) -> dict[str, Any]:
        after = _decode_cursor(q.cursor)
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_ORDERS, event_id)
            rows = await store.list_orders(conn, event_id, _filters(q, _ORDER_FILTERS), after=after, limit=q.limit + 1)
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        return {"items": [_order_out(r) for r in rows],
                "next_cursor": _encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None}

    async def attendees(self, principal: Principal, event_id: uuid.UUID, q: AttendeesQuery) -> dict[str, Any]:
        after = _decode_cursor(q.cursor)
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_ATTENDEES, event_id)
            rows = await store.list_attendees(conn, event_id, _filters(q, _ATTENDEE_FILTERS), after=after,
                                              limit=q.limit + 1)
            questions = await store.questions(conn, event_id)
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        return {"items": [_attendee_out(r) for r in rows],
                "questions": [{"id": x["id"], "label": x["label"]} for x in questions],
                "next_cursor": _encode_cursor(rows[-1]["issued_at"], rows[-1]["id"]) if more else None}

    async def sales(self, principal: Principal, event_id: uuid.UUID) -> dict[str, Any]:
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_ORDERS, event_id)
            types, quotas = await store.sales(conn, event_id)
        return {"event_id": event_id, "ticket_types": [dict(t) for t in types], "quotas": [dict(q) for q in quotas],
                "totals": {k: sum(t[k] for t in types if t["status"] == "active")
                           for k in ("capacity", "sold", "held", "available")}}

    async def revenue(self, principal: Principal, event_id: uuid.UUID) -> dict[str, Any]:
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.VIEW_REVENUE, event_id)
            totals, by_type = await store.revenue(conn, event_id)
        return {"event_id": event_id,
                "currencies": [{"currency": r["currency"], "orders": r["orders"], "gross_cents": r["gross_cents"],
                                "refunded_cents": r["refunded_cents"],
                                "net_cents": r["gross_cents"] - r["refunded_cents"]} for r in totals],
                "ticket_types": [dict(r) for r in by_type]}

    # --- CSV exports (streamed) ------------------------------------------------------------------
    async def orders_csv(self, principal: Principal, event_id: uuid.UUID, q: OrdersQuery) -> AsyncIterator[bytes]:
        await self._authorize(principal, event_id, Action.VIEW_ORDERS)
        return self._orders_csv(event_id, _filters(q, _ORDER_FILTERS))

    async def _orders_csv(self, event_id: uuid.UUID, filters: dict[str, Any]) -> AsyncIterator[bytes]:
        yield csv_line(["order_id", "status", "created_at", "paid_at", "buyer_name", "buyer_email", "currency",
                        "total_cents", "refunded_cents", "items"])
        async with store.snapshot(self.db, "reports.orders_csv") as conn:
            async for r in store.stream_orders(conn, event_id, filters):
                items = "; ".join(f"{i['name']} x{i['quantity']} @{i['unit_price_cents']}" for i in r["items"])
                yield csv_line([r["id"], r["status"], r["created_at"], r["paid_at"], r["buyer_name"], r["buyer_email"],
                                r["currency"], r["total_cents"], r["refunded_cents"], items])

    async def attendees_csv(self, principal: Principal, event_id: uuid.UUID,
                            q: AttendeesQuery) -> AsyncIterator[bytes]:
        await self._authorize(principal, event_id, Action.VIEW_ATTENDEES)
        return self._attendees_csv(event_id, _filters(q, _ATTENDEE_FILTERS))

    async def _attendees_csv(self, event_id: uuid.UUID, filters: dict[str, Any]) -> AsyncIterator[bytes]:
        async with store.snapshot(self.db, "reports.attendees_csv") as conn:
            questions = await store.questions(conn, event_id)
            yield csv_line(["ticket_id", "status", "ticket_type", "holder_name", "holder_email", "order_id", "seat",
                            "checked_in_at", "checked_in_gate", "inside", *[x["label"] for x in questions]])
            async for r in store.stream_attendees(conn, event_id, filters):
                seat = r["seat"]
                first = r["first_checkin"]
                answers = r["answers"] or {}
                cells = [r["id"], r["status"], r["ticket_type"], r["holder_name"], r["holder_email"], r["order_id"],
                         f"{seat['section']} {seat['row']}-{seat['label']}" if seat else "",
                         first["scanned_at"] if first else "", first["gate"] if first else "",
                         "yes" if r["inside"] else "no"]
                for x in questions:
                    value = answers.get(str(x["id"]))
                    if isinstance(value, list):
                        value = "; ".join(map(str, value))
                    elif isinstance(value, bool):
                        value = "yes" if value else "no"
                    cells.append(value)
                yield csv_line(cells)
