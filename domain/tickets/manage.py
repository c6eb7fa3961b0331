"""Organizer side of the catalog: ticket types and shared quotas (create, change, list)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from domain.errors import FoyerError, field_error
from domain.identity import Principal
from domain.policy import Action, authorize, load_access
from domain.tickets.catalog import SaleCatalog
from domain.tickets.keys import EventKeys
from domain.tickets.models import Quota, TicketType
from domain.tickets.rules import hash_access_code
from storage import tickets as store
from storage.db import Database
from storage.inventory import Gate

Kind = Literal["general", "vip", "early_bird", "free", "donation"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{3}$")]
Count = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
PerOrder = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Cents = Annotated[int, msgspec.Meta(ge=0, le=10**10)]
Code = Annotated[str, msgspec.Meta(min_length=4, max_length=128)]


class TicketTypeIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    price_cents: Cents
    currency: Currency
    capacity: Count
    kind: Kind = "general"
    description: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    min_per_order: PerOrder = 1
    max_per_order: PerOrder = 10
    sale_starts_at: datetime | None = None
    sale_ends_at: datetime | None = None
    visibility: Literal["public", "hidden"] = "public"
    access_code: Code | None = None
    position: int = 0


class TicketTypePatch(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Name | None = None
    description: Annotated[str, msgspec.Meta(max_length=4000)] | None = None
    price_cents: Cents | None = None
    capacity: Count | None = None
    min_per_order: PerOrder | None = None
    max_per_order: PerOrder | None = None
    sale_starts_at: datetime | None = None
    sale_ends_at: datetime | None = None
    visibility: Literal["public", "hidden"] | None = None
    access_code: Code | None = None
    position: int | None = None
    status: Literal["active", "archived"] | None = None


class QuotaIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    capacity: Count
    ticket_type_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=50)]


def _check_window(starts: datetime | None, ends: datetime | None) -> None:
    for name, ts in (("sale_starts_at", starts), ("sale_ends_at", ends)):
        if ts is not None and ts.tzinfo is None:
            raise field_error(name, "needs a timezone (e.g. 2030-01-01T10:00:00Z)")
    if starts and ends and ends <= starts:
        raise field_error("sale_ends_at", "must be after sale_starts_at")


class CatalogAdmin:
    def __init__(self, *, db: Database, gate: Gate, catalog: SaleCatalog, keys: EventKeys) -> None:
        self.db = db
        self.gate = gate
        self.catalog = catalog
        self.keys = keys

    async def _changed(self, event_id: uuid.UUID) -> None:
        self.catalog.invalidate(event_id)
        await self.gate.invalidate(event_id)

    async def create_type(self, principal: Principal, event_id: uuid.UUID, body: TicketTypeIn) -> TicketType:
        _check_window(body.sale_starts_at, body.sale_ends_at)
        if body.max_per_order < body.min_per_order:
            raise field_error("max_per_order", "must be at least min_per_order")
        if body.kind == "free" and body.price_cents != 0:
            raise field_error("price_cents", "free tickets cost 0")
        if body.visibility == "hidden" and not body.access_code:
            raise field_error("access_code", "hidden ticket types need an access code")
        fields: dict[str, Any] = {k: getattr(body, k) for k in (
            "name", "description", "kind", "price_cents", "capacity", "min_per_order", "max_per_order",
            "sale_starts_at", "sale_ends_at", "visibility", "position")}
        fields["currency"] = body.currency.upper()
        if body.access_code:
            fields["access_code_hash"] = hash_access_code(body.access_code)
        async with self.db.transaction("tickets.create_type") as conn:
            await authorize(conn, principal, Action.MANAGE_TICKETS, event_id)
            created = await store.create_type(conn, event_id, fields)
        await self.keys.signer(event_id)  # the event's signing key exists before anything is sold
        await self._changed(event_id)
        return created

    async def update_type(self, principal: Principal, event_id: uuid.UUID, type_id: uuid.UUID,
                          body: TicketTypePatch) -> TicketType:
        fields = msgspec.structs.asdict(body)
        fields = {k: v for k, v in fields.items() if v is not None}
        code = fields.pop("access_code", None)
        if code:
            fields["access_code_hash"] = hash_access_code(code)
        async with self.db.transaction("tickets.update_type") as conn:
            await authorize(conn, principal, Action.MANAGE_TICKETS, event_id)
            current = await store.get_type(conn, event_id, type_id)
            if current is None:
                raise FoyerError("not_found", "ticket type not found")
            _check_window(fields.get("sale_starts_at", current.sale_starts_at),
                          fields.get("sale_ends_at", current.sale_ends_at))
            if fields.get("visibility") == "hidden" and not (code or current.access_code_hash):
                raise field_error("access_code", "hidden ticket types need an access code")
            updated = await store.update_type(conn, event_id, type_id, fields)
        await self._changed(event_id)
        return updated

    async def list_types(self, principal: Principal | None, event_id: uuid.UUID,
                         access_code: str | None) -> list[dict[str, Any]]:
        """Fresh from PostgreSQL: capacity, sold, held, available per type. Hidden types only for
        the event's managers or with their access code."""
        async with self.db.connection() as conn:
            access = await load_access(conn, principal, event_id)
            if not access.can(Action.VIEW_EVENT):
                raise FoyerError("not_found", "event not found")
            manager = access.can(Action.MANAGE_TICKETS)
            types = await store.list_types(conn, event_id)
        code_hash = hash_access_code(access_code) if access_code else None
        out = []
        for t in types:
            if not manager and (t.status != "active" or (t.visibility == "hidden" and (
                    code_hash is None or bytes(t.access_code_hash or b"") != code_hash))):
                continue
            out.append(t.public())
        return out

    async def create_quota(self, principal: Principal, event_id: uuid.UUID, body: QuotaIn) -> dict[str, Any]:
        async with self.db.transaction("tickets.create_quota") as conn:
            await authorize(conn, principal, Action.MANAGE_TICKETS, event_id)
            taken = await conn.fetchval(
                "SELECT count(*) FROM ticket_types WHERE id = ANY($1::uuid[]) AND quota_id IS NOT NULL",
                body.ticket_type_ids)
            if taken:
                raise field_error("ticket_type_ids", "a ticket type belongs to at most one quota")
            quota = await store.create_quota(conn, event_id, name=body.name, capacity=body.capacity,
                                             type_ids=body.ticket_type_ids)
        await self._changed(event_id)
        return quota.public(sorted(body.ticket_type_ids))

    async def list_quotas(self, principal: Principal, event_id: uuid.UUID) -> list[dict[str, Any]]:
        async with self.db.connection() as conn:
            await authorize(conn, principal, Action.MANAGE_TICKETS, event_id)
            rows = await store.list_quotas(conn, event_id)
        return [q.public(tids) for q, tids in rows]


__all__ = ["CatalogAdmin", "Quota", "QuotaIn", "TicketTypeIn", "TicketTypePatch"]
