"""Ticket types, shared quotas, issued tickets (QR, wallet JSON, transfer) and event signing keys."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from aiohttp import web

from domain.tickets.manage import QuotaIn, TicketTypeIn, TicketTypePatch
from handlers.api import ApiRequest, Router
from handlers.orders import services

router = Router("tickets", "Ticket types, quotas and issued tickets.")


class TicketTypeOut(msgspec.Struct):
    id: uuid.UUID
    event_id: uuid.UUID
    name: str
    kind: str
    price_cents: int
    currency: str
    capacity: int
    sold: int
    held: int
    available: int
    min_per_order: int
    max_per_order: int
    visibility: str
    status: str
    description: str = ""
    sale_starts_at: datetime | None = None
    sale_ends_at: datetime | None = None
    quota_id: uuid.UUID | None = None
    position: int = 0


class QuotaOut(msgspec.Struct):
    id: uuid.UUID
    event_id: uuid.UUID
    name: str
    capacity: int
    sold: int
    held: int
    available: int
    ticket_type_ids: list[uuid.UUID] = []


class TypesQuery(msgspec.Struct, forbid_unknown_fields=True):
    access_code: str | None = None


@router.post("/api/events/{event_id}/ticket-types", summary="Create a ticket type (organizers)", status=201,
             body=TicketTypeIn, response=TicketTypeOut, idempotency="ticket_types.create",
             errors=("not_found", "forbidden", "validation_failed"))
async def create_ticket_type(req: ApiRequest) -> dict:
    """Price and currency in integer minor units; `visibility: hidden` needs an `access_code`."""
    created = await services(req).admin.create_type(req.principal, req.params["event_id"], req.body)
    return created.public()


@router.get("/api/events/{event_id}/ticket-types", summary="Ticket types with capacity, sold, held, available",
            auth="optional", query=TypesQuery, response=list[TicketTypeOut], errors=("not_found",))
async def list_ticket_types(req: ApiRequest) -> list:
    """Hidden types are listed for the event's organizers, or with their `access_code`."""
    return await services(req).admin.list_types(req.principal, req.params["event_id"], req.query.access_code)


@router.patch("/api/events/{event_id}/ticket-types/{ticket_type_id}", summary="Change a ticket type (organizers)",
              body=TicketTypePatch, response=TicketTypeOut,
              errors=("not_found", "forbidden", "validation_failed", "conflict"))
async def update_ticket_type(req: ApiRequest) -> dict:
    """Capacity cannot go below what is sold or held (`conflict`); `status: archived` stops sales."""
    updated = await services(req).admin.update_type(req.principal, req.params["event_id"],
                                                    req.params["ticket_type_id"], req.body)
    return updated.public()


@router.post("/api/events/{event_id}/ticket-quotas", summary="Share one capacity across several ticket types",
             status=201, body=QuotaIn, response=QuotaOut, errors=("not_found", "forbidden", "validation_failed",
                                                                 "conflict"))
async def create_quota(req: ApiRequest) -> dict:
    return await services(req).admin.create_quota(req.principal, req.params["event_id"], req.body)


@router.get("/api/events/{event_id}/ticket-quotas", summary="Shared quotas (organizers)", response=list[QuotaOut],
            errors=("not_found", "forbidden"))
async def list_quotas(req: ApiRequest) -> list:
    return await services(req).admin.list_quotas(req.principal, req.params["event_id"])


__all__ = ["router", "web"]


class TicketOut(msgspec.Struct):
    id: uuid.UUID
    event_id: uuid.UUID
    ticket_type_id: uuid.UUID
    code: str
    status: str
    order_id: uuid.UUID | None = None
    issued_at: datetime | None = None


class TransferIn(msgspec.Struct, forbid_unknown_fields=True):
    to_email: str | None = None
    to_user_id: uuid.UUID | None = None


class TicketKeyOut(msgspec.Struct):
    event_id: uuid.UUID
    alg: str
    kid: str
    public_key: str
    format: str


@router.get("/api/me/tickets", summary="My valid tickets", response=list[TicketOut])
async def my_tickets(req: ApiRequest) -> list:
    return [t.public() for t in await services(req).holders.mine(req.user_id)]


@router.get("/api/tickets/{ticket_id}", summary="One of my tickets", response=TicketOut, errors=("not_found",))
async def get_ticket(req: ApiRequest) -> dict:
    return (await services(req).holders.owned(req.principal, req.params["ticket_id"])).public()


@router.get("/api/tickets/{ticket_id}/qr.png", summary="My ticket's QR code as PNG", content_type="image/png",
            errors=("not_found", "invalid_state"))
async def ticket_qr_png(req: ApiRequest) -> web.Response:
    data = await services(req).holders.qr(req.principal, req.params["ticket_id"], "png")
    return web.Response(body=data, content_type="image/png", headers={"Cache-Control": "private, no-store"})


@router.get("/api/tickets/{ticket_id}/qr.svg", summary="My ticket's QR code as SVG", content_type="image/svg+xml",
            errors=("not_found", "invalid_state"))
async def ticket_qr_svg(req: ApiRequest) -> web.Response:
    data = await services(req).holders.qr(req.principal, req.params["ticket_id"], "svg")
    return web.Response(body=data, content_type="image/svg+xml", headers={"Cache-Control": "private, no-store"})


@router.get("/api/tickets/{ticket_id}/wallet", summary="My ticket as wallet-friendly JSON", errors=("not_found",))
async def ticket_wallet(req: ApiRequest) -> dict:
    return await services(req).holders.wallet(req.principal, req.params["ticket_id"])


@router.post("/api/tickets/{ticket_id}/transfer", summary="Give my ticket to another account (old code void)",
             body=TransferIn, response=TicketOut, idempotency="tickets.transfer",
             errors=("not_found", "invalid_state", "validation_failed"))
async def transfer_ticket(req: ApiRequest) -> dict:
    body: TransferIn = req.body
    moved = await services(req).holders.transfer(req.principal, req.params["ticket_id"], to_email=body.to_email,
                                                 to_user_id=body.to_user_id)
    return {"id": moved.id, "event_id": moved.event_id, "ticket_type_id": moved.ticket_type_id,
            "status": moved.status, "code": "(sent to the new holder)"}


@router.get("/api/events/{event_id}/ticket-key", summary="The event's public key for offline ticket verification",
            auth="optional", response=TicketKeyOut, errors=("not_found",))
async def ticket_key(req: ApiRequest) -> dict:
    """Ed25519; codes are `FY1.<base64url payload>.<base64url signature>` (docs/ticketing.md)."""
    event_id = req.params["event_id"]
    from domain.policy import Action, load_access

    async with req.core.db.connection() as conn:
        access = await load_access(conn, req.principal, event_id)
    if not access.can(Action.VIEW_EVENT):
        from domain.errors import not_found

        raise not_found("event")
    return await services(req).keys.public(event_id)
