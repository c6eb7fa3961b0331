"""The `stripe` provider: PaymentIntents and refunds through the official `stripe` SDK (its
blocking HTTP calls run in the default executor), webhooks verified with the endpoint's signing
secret and tolerance window. `api_base` points the SDK elsewhere (tests: a local server speaking
Stripe's form-encoded REST protocol)."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import stripe

from domain.errors import FoyerError
from integrations.payments import Intent, RefundResult, WebhookEvent
from integrations.payments.sandbox_client import event_from_payload

T = TypeVar("T")


class StripeProvider:
    name = "stripe"

    def __init__(self, *, api_key: str, webhook_secret: str, api_base: str = "https://api.stripe.com",
                 tolerance: int = 300) -> None:
        if not api_key or not webhook_secret:
            raise ValueError("the stripe provider needs FOYER_STRIPE_API_KEY and FOYER_STRIPE_WEBHOOK_SECRET")
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance
        self.client = stripe.StripeClient(api_key, base_addresses={"api": api_base}, max_network_retries=2)

    async def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kw))
        except stripe.CardError as exc:
            raise FoyerError("payment_failed", exc.user_message or "card declined",
                             details={"provider_code": exc.code}) from None
        except (stripe.InvalidRequestError, stripe.AuthenticationError, stripe.PermissionError,
                stripe.IdempotencyError) as exc:  # refused for good: retrying cannot help
            raise FoyerError("payment_failed", exc.user_message or f"Stripe refused: {type(exc).__name__}",
                             details={"provider_code": getattr(exc, "code", None)}) from None
        except stripe.StripeError as exc:
            raise FoyerError("unavailable", f"Stripe refused or is unreachable: {type(exc).__name__}",
                             details={"provider_code": getattr(exc, "code", None)}) from None

    async def create_intent(self, *, amount_cents: int, currency: str, order_id: uuid.UUID,
                            idempotency_key: str) -> Intent:
        pi = await self._call(
            self.client.v1.payment_intents.create,
            params={"amount": amount_cents, "currency": currency.lower(), "metadata": {"order_id": str(order_id)}},
            options={"idempotency_key": idempotency_key})
        return Intent(pi.id, pi.client_secret or "", pi.status, pi.amount, pi.currency.upper())

    async def refund(self, *, intent_id: str, amount_cents: int, idempotency_key: str) -> RefundResult:
        r = await self._call(self.client.v1.refunds.create,
                             params={"payment_intent": intent_id, "amount": amount_cents},
                             options={"idempotency_key": idempotency_key})
        return RefundResult(r.id, r.status or "pending")

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        try:
            stripe.Webhook.construct_event(payload, headers.get("Stripe-Signature"), self.webhook_secret,
                                           tolerance=self.tolerance)
        except (stripe.SignatureVerificationError, ValueError):
            raise FoyerError("invalid_signature", "webhook signature verification failed") from None
        return event_from_payload(payload)

    def confirm_url(self, intent_id: str) -> str | None:
        return None  # Stripe.js / mobile SDKs confirm with the client secret

    async def close(self) -> None:
        return None
