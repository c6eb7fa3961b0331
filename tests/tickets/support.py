"""Helpers for ticketing tests: events made in SQL (until `POST /api/events` lands), ticket types
and orders over HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from tests.support.api import Api, User


@dataclass
class Sale:
    event_id: str
    organizer: User


async def create_event(dsn_or_db: Any, owner: User, *, status: str = "published", title: str = "Drop") -> str:
    """Insert a published event owned by `owner` (an organizer member)."""
    sql_event = """INSERT INTO events (owner_id, slug, title, starts_at, ends_at, status, published_at)
                   VALUES ($1, $2, $3, now() + interval '30 days', now() + interval '31 days', $4,
                           CASE WHEN $4 = 'published' THEN now() END) RETURNING id"""
    sql_member = "INSERT INTO event_members (event_id, user_id, role) VALUES ($1, $2, 'organizer')"
    slug = "ev-" + uuid.uuid4().hex[:12]
    if isinstance(dsn_or_db, str):
        conn = await asyncpg.connect(dsn_or_db)
        try:
            event_id = await conn.fetchval(sql_event, uuid.UUID(owner.id), slug, title, status)
            await conn.execute(sql_member, event_id, uuid.UUID(owner.id))
        finally:
            await conn.close()
    else:
        event_id = await dsn_or_db.fetchval(sql_event, uuid.UUID(owner.id), slug, title, status)
        await dsn_or_db.execute(sql_member, event_id, uuid.UUID(owner.id))
    return str(event_id)


async def new_sale(api: Api, db: Any, **kw: Any) -> Sale:
    organizer = await api.register("Organizer")
    return Sale(await create_event(db, organizer, **kw), organizer)


async def create_type(api: Api, sale: Sale, **fields: Any) -> dict:
    body = {"name": "General", "kind": "general", "price_cents": 2500, "currency": "EUR", "capacity": 10}
    body.update(fields)
    status, out = await api.post(f"/api/events/{sale.event_id}/ticket-types", user=sale.organizer, json=body)
    assert status == 201, (status, out)
    return out


async def order(api: Api, sale: Sale, buyer: User, items: list[dict], *, key: str | None = None,
                **extra: Any) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else None
    return await api.post(f"/api/events/{sale.event_id}/orders", user=buyer, json={"items": items, **extra},
                          headers=headers)


async def types_by_id(api: Api, sale: Sale) -> dict[str, dict]:
    status, body = await api.get(f"/api/events/{sale.event_id}/ticket-types", user=sale.organizer)
    assert status == 200, body
    return {t["id"]: t for t in body}


def key() -> str:
    return uuid.uuid4().hex


SANDBOX_SECRET = "sk_sandbox_test_secret_0123456789"


@dataclass
class Shop:
    """A Foyer node wired to a standalone sandbox processor (webhooks go back to the node)."""

    api: Api
    db: Any
    sandbox_url: str
    sandbox_app: Any
    server: Any


async def start_shop(aiohttp_server, app_factory, settings_factory, http, **overrides: Any) -> Shop:
    from handlers.api import CORE
    from integrations.payments.sandbox import STATE, create_sandbox_app

    sandbox_app = create_sandbox_app(SANDBOX_SECRET)
    sandbox = await aiohttp_server(sandbox_app)
    sandbox_url = str(sandbox.make_url("")).rstrip("/")
    settings = {"payments_sandbox_url": sandbox_url, "payments_sandbox_secret": SANDBOX_SECRET, **overrides}
    if overrides.get("payments_provider") == "stripe":
        settings.update(stripe_api_key=SANDBOX_SECRET, stripe_webhook_secret=SANDBOX_SECRET, stripe_api_base=sandbox_url)
    server = await app_factory(settings_factory(**settings))
    sandbox_app[STATE]["webhook_url"] = str(server.make_url("/api/payments/webhooks/"
                                                            + overrides.get("payments_provider", "sandbox")))
    return Shop(Api(str(server.make_url("/")), http), server.app[CORE].db, sandbox_url, sandbox_app, server)


async def confirm(http, payment: dict, card: str = "4242424242424242") -> tuple[int, Any]:
    """What a buyer's client does: send the card to the processor, never to Foyer."""
    async with http.post(payment["confirm_url"], data={"client_secret": payment["client_secret"],
                                                       "payment_method_data[card][number]": card}) as r:
        return r.status, await r.json()


async def wait_for(fn, timeout: float = 10.0):
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = await fn()
        if value or loop.time() > end:
            return value
        await asyncio.sleep(0.03)
