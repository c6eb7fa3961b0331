"""Ticket types for `python run.py demo` (the `Component.extra["demo"]` hook of server/demo.py).

Adds to the demo conference, through the same domain functions as the HTTP API and as its
organizer: General, VIP, two early-bird types sharing one quota, a free community pass and a
hidden speaker/sponsor type behind an access code. Idempotent: an event that already has ticket
types is left alone (and its types are listed again)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.crypto import FieldCipher
from domain.services import Core
from domain.tickets.catalog import SaleCatalog
from domain.tickets.keys import EventKeys
from domain.tickets.manage import CatalogAdmin, QuotaIn, TicketTypeIn
from storage import tickets as store
from storage.inventory import Gate

SPEAKER_CODE = "FOYER-SPEAKERS"


async def add_demo_tickets(core: Core, result: Any) -> None:
    organizer = result.accounts["organizer"].principal
    async with core.db.connection() as conn:
        existing = await store.list_types(conn, result.event_id)
    created = not existing
    if created:
        gate = Gate(core.redis, core.keys, core.db) if core.redis is not None else _NoGate()
        admin = CatalogAdmin(db=core.db, gate=gate, catalog=SaleCatalog(core.db, 0),  # type: ignore[arg-type]
                             keys=EventKeys(core.db, FieldCipher(str(core.settings.auth.encryption_keys))))
        early_ends = datetime.now(UTC) + timedelta(days=14)
        specs = [
            TicketTypeIn(name="General admission", kind="general", price_cents=14_900, currency="EUR", capacity=300,
                         max_per_order=6, description="Both days, all talks and workshops.", position=1),
            TicketTypeIn(name="VIP", kind="vip", price_cents=39_900, currency="EUR", capacity=40, max_per_order=2,
                         description="Front rows, speakers' dinner, lounge access.", position=2),
            TicketTypeIn(name="Early bird", kind="early_bird", price_cents=9_900, currency="EUR", capacity=150,
                         max_per_order=4, sale_ends_at=early_ends, position=0,
                         description="Until two weeks from now, while the early-bird quota lasts."),
            TicketTypeIn(name="Early bird (student)", kind="early_bird", price_cents=4_900, currency="EUR",
                         capacity=60, max_per_order=1, sale_ends_at=early_ends, position=0,
                         description="Student ID checked at the door; shares the early-bird quota."),
            TicketTypeIn(name="Community pass", kind="free", price_cents=0, currency="EUR", capacity=50,
                         max_per_order=1, description="Free: the community stage and the evening meetup.",
                         position=3),
            TicketTypeIn(name="Speakers & sponsors", kind="vip", price_cents=0, currency="EUR", capacity=30,
                         max_per_order=2, visibility="hidden", access_code=SPEAKER_CODE, position=4,
                         description="Hidden: only with the access code sent to speakers and sponsors."),
        ]
        made = [await admin.create_type(organizer, result.event_id, spec) for spec in specs]
        await admin.create_quota(organizer, result.event_id, QuotaIn(
            name="All early birds", capacity=150, ticket_type_ids=[made[2].id, made[3].id]))
        async with core.db.connection() as conn:
            existing = await store.list_types(conn, result.event_id)
    base = core.settings.base_url
    lines = [f"Tickets ({'created' if created else 'already there'}; early birds share one quota of 150):"]
    for t in existing:
        price = "free" if t.price_cents == 0 else f"{t.price_cents / 100:.2f} {t.currency}"
        hidden = f"  hidden, access code {SPEAKER_CODE}" if t.visibility == "hidden" else ""
        lines.append(f"  {t.name:<22} {t.kind:<10} {price:>12}  capacity {t.capacity:<4} id {t.id}{hidden}")
    lines += [f"  list      {base}/api/events/{result.event_id}/ticket-types",
              f"  buy       POST {base}/api/events/{result.event_id}/orders  (Idempotency-Key, "
              '{"items":[{"ticket_type_id": ..., "quantity": 1}]})']
    result.lines.extend(lines)


class _NoGate:
    """The demo without Redis: nothing to invalidate (the first buyer builds the gate)."""

    async def invalidate(self, event_id: Any) -> None:
        return None
