"""Issued tickets seen by their holders: list, QR (PNG/SVG, rendered off the event loop), wallet
JSON, transfer (new code, old code void), and the event's public verification key."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

from domain.errors import FoyerError, not_found
from domain.identity import Principal
from domain.tickets.keys import EventKeys
from domain.tickets.models import Ticket
from storage import tickets as store
from storage.db import Database


def render_qr(code: str, kind: str, scale: int = 6) -> bytes:
    """PNG or SVG bytes of a QR code (error correction M). Blocking: call via an executor."""
    import segno

    qr = segno.make_qr(code, error="m")
    out = io.BytesIO()
    qr.save(out, kind=kind, scale=scale, border=4)
    return out.getvalue()


class TicketHolders:
    def __init__(self, *, db: Database, keys: EventKeys) -> None:
        self.db = db
        self.keys = keys

    async def mine(self, user_id: uuid.UUID) -> list[Ticket]:
        async with self.db.connection() as conn:
            return await store.tickets_of_user(conn, user_id)

    async def owned(self, principal: Principal, ticket_id: uuid.UUID) -> Ticket:
        async with self.db.connection() as conn:
            ticket = await store.get_ticket(conn, ticket_id)
        if ticket is None or ticket.holder_id != principal.user_id:
            raise not_found("ticket")
        return ticket

    async def qr(self, principal: Principal, ticket_id: uuid.UUID, kind: str) -> bytes:
        ticket = await self.owned(principal, ticket_id)
        if ticket.status != "valid":
            raise FoyerError("invalid_state", "this ticket is void")
        return await asyncio.get_running_loop().run_in_executor(None, render_qr, ticket.code, kind)

    async def wallet(self, principal: Principal, ticket_id: uuid.UUID) -> dict[str, Any]:
        """A wallet-friendly description (fields map onto Apple/Google pass barcodes)."""
        ticket = await self.owned(principal, ticket_id)
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                """SELECT e.title, e.starts_at, e.ends_at, e.venue, tt.name AS type_name, tt.kind, u.name AS holder
                     FROM tickets t JOIN events e ON e.id = t.event_id JOIN ticket_types tt ON tt.id = t.ticket_type_id
                     JOIN users u ON u.id = t.holder_id WHERE t.id = $1""", ticket.id)
        key = await self.keys.public(ticket.event_id)
        return {
            "format": "foyer.wallet.v1", "ticket_id": ticket.id, "status": ticket.status,
            "event": {"id": ticket.event_id, "title": row["title"], "starts_at": row["starts_at"],
                      "ends_at": row["ends_at"], "venue": row["venue"]},
            "ticket_type": {"id": ticket.ticket_type_id, "name": row["type_name"], "kind": row["kind"]},
            "holder": {"name": row["holder"]},
            "barcode": {"format": "QR", "message": ticket.code, "encoding": "iso-8859-1",
                        "alt_text": str(ticket.id)[:8]},
            "verification": {"alg": key["alg"], "kid": key["kid"], "public_key": key["public_key"]},
        }

    async def transfer(self, principal: Principal, ticket_id: uuid.UUID, *, to_email: str | None,
                       to_user_id: uuid.UUID | None) -> Ticket:
        """Give a valid ticket to another account: new generation and code, the old code is void."""
        async with self.db.transaction("tickets.transfer") as conn:
            ticket = await store.get_ticket(conn, ticket_id, for_update=True)
            if ticket is None or ticket.holder_id != principal.user_id:
                raise not_found("ticket")
            if ticket.status != "valid":
                raise FoyerError("invalid_state", "this ticket is void")
            if to_user_id is None:
                to_user_id = await conn.fetchval(
                    "SELECT id FROM users WHERE lower(email) = lower($1) AND disabled_at IS NULL", to_email or "")
            elif not await conn.fetchval("SELECT 1 FROM users WHERE id = $1 AND disabled_at IS NULL", to_user_id):
                to_user_id = None
            if to_user_id is None:
                raise FoyerError("validation_failed", "no such account",
                                 details=[{"field": "to", "message": "no account with this email or id"}])
            if to_user_id == principal.user_id:
                raise FoyerError("validation_failed", "that is you", details=[{"field": "to", "message": "yourself"}])
            signer = await self.keys.signer(ticket.event_id)
            moved = await store.transfer_ticket(conn, ticket, to_user_id=to_user_id,
                                                new_code=signer.sign(ticket.id, ticket.generation + 1))
            await store.add_attendees(conn, [(ticket.event_id, to_user_id)])
            await store.drop_attendee_if_no_ticket(conn, ticket.event_id, principal.user_id)
            from storage.orders import append_outbox

            await append_outbox(conn, [("ticket.transferred", ticket.event_id, {
                "ticket_id": str(ticket.id), "from_user_id": str(principal.user_id), "to_user_id": str(to_user_id),
                "generation": moved.generation, "void_code_generation": ticket.generation})])
        return moved
