"""Wiring of the tickets capability: catalog cache, Redis gate, hold batcher, expiry sweeper,
payment provider (and the opt-in sandbox processor), routes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily

from domain.consumers import Consumer
from domain.services import Core
from domain.tickets.catalog import SaleCatalog
from domain.tickets.demo import add_demo_tickets
from domain.tickets.event_cancel import EventCancellationRefunds
from domain.tickets.holders import TicketHolders
from domain.tickets.keys import EventKeys
from domain.tickets.manage import CatalogAdmin
from domain.tickets.ordering import OrderService
from domain.tickets.payments import PaymentService
from domain.tickets.refunds import RefundRetrier
from domain.tickets.services import TicketServices
from handlers import orders, payments, tickets
from handlers.api import reserve_path
from handlers.orders import TICKETS
from server.components import Component
from server.components.accounts import CIPHER
from server.metrics import METRICS
from storage.inventory import Gate
from storage.reconcile import GateReconciler

log = logging.getLogger("foyer.tickets")


def sandbox_secret(core: Core) -> str:
    """The sandbox API key / webhook secret: configured, or derived from the JWT secret so that
    every node of a deployment agrees without configuration."""
    configured = str(core.settings.tickets.payments_sandbox_secret)
    if configured:
        return configured
    return "sk_sandbox_" + hmac.new(str(core.settings.auth.jwt_secret).encode(), b"foyer-sandbox-payments",
                                    hashlib.sha256).hexdigest()[:40]


def build_provider(core: Core) -> object:
    s = core.settings.tickets
    if s.payments_provider == "stripe":
        from integrations.payments.stripe_provider import StripeProvider

        return StripeProvider(api_key=str(s.stripe_api_key), webhook_secret=str(s.stripe_webhook_secret),
                              api_base=s.stripe_api_base, tolerance=s.payments_webhook_tolerance_seconds)
    from integrations.payments.sandbox_client import SandboxProvider

    base = s.payments_sandbox_url or (core.settings.base_url + "/sandbox")
    return SandboxProvider(base, sandbox_secret(core), tolerance=s.payments_webhook_tolerance_seconds)


class _SaleCollector:
    """Hot-path counters of the order service, read when /metrics is scraped (no cost per request)."""

    def __init__(self, orders: OrderService) -> None:
        self.orders = orders

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("foyer_tickets_sold_out_answers", "Orders answered sold_out (409) on this node",
                                  value=self.orders.sold_out_answers)
        yield CounterMetricFamily("foyer_tickets_hold_batches", "Group-commit transactions of holds",
                                  value=self.orders.batcher.batches)
        yield CounterMetricFamily("foyer_tickets_hold_requests", "Holds submitted to the group-commit batcher",
                                  value=self.orders.batcher.requests)
        yield CounterMetricFamily("foyer_tickets_optimistic_batches",
                                  "Hold batches committed with the type row locked only at the end",
                                  value=self.orders.optimistic_batches)
        gate = self.orders.gate
        yield CounterMetricFamily("foyer_tickets_gate_calls", "Gate script calls (each admits a tick's buyers)",
                                  value=gate.admit_calls)
        yield CounterMetricFamily("foyer_tickets_marker_batches", "Batched lookups of Idempotency-Key markers",
                                  value=gate.markers.batches)
        yield CounterMetricFamily("foyer_tickets_marker_lookups", "Idempotency-Key markers looked up",
                                  value=gate.markers.lookups)


def setup(app: web.Application, core: Core) -> None:
    app[TICKETS] = TicketServices()
    # The hot path of a drop (and of every sold_out answer) is resolved before the other
    # /api/events/{id}/... templates (handlers.api.reserve_path).
    reserve_path(app, "/api/events/{event_id}/orders")
    s = core.settings.tickets
    if s.payments_sandbox_mount:
        from integrations.payments.sandbox import create_sandbox_app

        app.add_subapp("/sandbox", create_sandbox_app(sandbox_secret(core),
                                                      webhook_url=s.payments_sandbox_webhook_url))


async def lifespan(app: web.Application, core: Core) -> AsyncIterator[None]:
    s = core.settings.tickets
    svc = app[TICKETS]
    gate = Gate(core.redis, core.keys, core.db, sold_out_ttl_s=s.sold_out_cache_ms / 1000)
    catalog = SaleCatalog(core.db, s.sale_cache_seconds)
    keys = EventKeys(core.db, app[CIPHER])
    order_service = OrderService(
        db=core.db, gate=gate, catalog=catalog, keys=keys, hold_seconds=s.hold_seconds,
        max_seats=s.max_tickets_per_order, batch_max=s.order_batch_max, batch_window_s=s.order_batch_window_ms / 1000)
    svc.gate, svc.keys = gate, keys
    svc.admin = CatalogAdmin(db=core.db, gate=gate, catalog=catalog, keys=keys)
    provider = build_provider(core)
    svc.payments = PaymentService(db=core.db, orders=order_service, keys=keys, provider=provider)
    refunds = RefundRetrier(db=core.db, provider=provider, max_attempts=s.refund_max_attempts,
                            base_s=s.refund_backoff_base_seconds, cap_s=s.refund_backoff_cap_seconds)
    svc.payments.refunds = refunds
    svc.holders = TicketHolders(db=core.db, keys=keys)
    svc.orders = order_service
    app[METRICS].registry.register(_SaleCollector(order_service))
    order_service.batcher.commit_delay_s = s.test_hold_commit_delay_ms / 1000
    order_service.batcher.start()
    gate.flags.start()
    reconciler = asyncio.create_task(GateReconciler(gate, interval_s=s.gate_reconcile_interval_seconds).loop(),
                                     name="foyer.gate_reconciler")
    refund_loop = asyncio.create_task(refunds.loop(s.refund_retry_interval_seconds), name="foyer.refund_retries")
    sweeper = asyncio.create_task(order_service.sweeper(s.hold_sweep_interval_seconds), name="foyer.hold_sweeper")
    try:
        yield
    finally:
        for task in (sweeper, reconciler, refund_loop):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await order_service.batcher.stop()
        await order_service.close()
        await gate.flags.stop()
        await provider.close()  # type: ignore[attr-defined]


def consumers(app: web.Application, core: Core) -> list[Consumer]:
    return [EventCancellationRefunds(core.db, app[TICKETS].payments).consumer()]


COMPONENT = Component(name="tickets", routers=(tickets.router, orders.router, payments.router), setup=setup,
                      lifespan=lifespan, consumers=consumers, extra={"demo": add_demo_tickets})
