"""Payment providers behind one interface. Card numbers never reach Foyer: buyers confirm a
payment intent directly with the processor (its client secret is all Foyer hands out), and
Foyer learns the outcome from signed webhooks.

Providers: `sandbox` (integrations/payments/sandbox.py: a local processor over HTTP, speaking a
Stripe-compatible subset, with test cards) and `stripe` (the official SDK).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Intent:
    intent_id: str
    client_secret: str
    status: str
    amount_cents: int
    currency: str


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund_id: str
    status: str  # pending | succeeded | failed


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified provider event, reduced to what Foyer acts on."""

    id: str
    type: str  # payment_intent.succeeded | payment_intent.payment_failed | refund.updated | ...
    intent_id: str | None = None
    amount_cents: int | None = None
    currency: str | None = None
    refund_id: str | None = None
    refund_status: str | None = None
    order_id: str | None = None


class PaymentProvider(Protocol):
    name: str

    async def create_intent(self, *, amount_cents: int, currency: str, order_id: uuid.UUID,
                            idempotency_key: str) -> Intent:
        """Create (or, for a repeated idempotency key, return the same) payment intent."""

    async def refund(self, *, intent_id: str, amount_cents: int, idempotency_key: str) -> RefundResult:
        """Refund part or all of a succeeded intent (idempotent per key)."""

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify the signature (FoyerError `invalid_signature` if bad or too old) and parse."""

    def confirm_url(self, intent_id: str) -> str | None:
        """Where a buyer's client confirms the intent with a card (the processor, never Foyer)."""

    async def close(self) -> None: ...
