"""The `sandbox` provider: Foyer's client of the sandbox processor (async aiohttp, no SDK)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from domain.errors import FoyerError
from integrations.payments import Intent, RefundResult, WebhookEvent
from integrations.payments.signing import verify


def event_from_payload(payload: bytes) -> WebhookEvent:
    """Stripe-shaped event JSON -> WebhookEvent (shared by both providers)."""
    try:
        data = orjson.loads(payload)
        obj = data["data"]["object"]
        kind = data["type"]
        if obj.get("object") == "refund":
            return WebhookEvent(id=data["id"], type=kind, intent_id=obj.get("payment_intent"),
                                amount_cents=obj.get("amount"), currency=obj.get("currency"),
                                refund_id=obj.get("id"), refund_status=obj.get("status"))
        return WebhookEvent(id=data["id"], type=kind, intent_id=obj.get("id"), amount_cents=obj.get("amount"),
                            currency=obj.get("currency"), order_id=(obj.get("metadata") or {}).get("order_id"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise FoyerError("bad_request", "malformed webhook payload") from None


class SandboxProvider:
    name = "sandbox"

    def __init__(self, base_url: str, secret: str, *, tolerance: int = 300) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.tolerance = tolerance
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.secret}"}, timeout=aiohttp.ClientTimeout(total=15),
                connector=aiohttp.TCPConnector(limit=64))
        return self._session

    async def _post(self, path: str, form: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        try:
            async with self._http().post(self.base_url + path, data=form,
                                         headers={"Idempotency-Key": idempotency_key}) as resp:
                body = orjson.loads(await resp.read())
                if resp.status >= 400:
                    err = body.get("error", {})
                    # 5xx and 429 are the processor's trouble: worth retrying (same idempotency key).
                    code = "unavailable" if resp.status >= 500 or resp.status == 429 else "payment_failed"
                    raise FoyerError(code, err.get("message", "the payment processor refused"),
                                     details={"provider_code": err.get("code") or err.get("type"),
                                              "http_status": resp.status})
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise FoyerError("unavailable", f"payment processor unreachable: {type(exc).__name__}") from None

    async def create_intent(self, *, amount_cents: int, currency: str, order_id: uuid.UUID,
                            idempotency_key: str) -> Intent:
        pi = await self._post("/v1/payment_intents", {"amount": str(amount_cents), "currency": currency.lower(),
                                                      "metadata[order_id]": str(order_id)}, idempotency_key)
        return Intent(pi["id"], pi["client_secret"], pi["status"], pi["amount"], pi["currency"].upper())

    async def refund(self, *, intent_id: str, amount_cents: int, idempotency_key: str) -> RefundResult:
        r = await self._post("/v1/refunds", {"payment_intent": intent_id, "amount": str(amount_cents)},
                             idempotency_key)
        return RefundResult(r["id"], r["status"])

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        verify(headers.get("Stripe-Signature"), payload, self.secret, tolerance=self.tolerance)
        return event_from_payload(payload)

    def confirm_url(self, intent_id: str) -> str | None:
        return f"{self.base_url}/v1/payment_intents/{intent_id}/confirm"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
