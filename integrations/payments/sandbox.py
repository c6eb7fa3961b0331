"""A sandbox payment processor over HTTP: a small aiohttp app speaking a Stripe-compatible subset.

Run it standalone (`python -m integrations.payments.sandbox --port 8090 --secret S --webhook-url
URL`) or mounted inside a node under /sandbox (`FOYER_PAYMENTS_SANDBOX_MOUNT=true`). State lives in
the process's memory: it is a test double for a real processor, not a ledger.

Protocol (form-encoded requests, JSON answers, Stripe's shapes and error envelope):
- `POST /v1/payment_intents` (Bearer <secret>; amount, currency, metadata[...]; `Idempotency-Key`
  replays the first answer, a different body with the same key is 400 `idempotency_error`);
- `GET /v1/payment_intents/{id}` (Bearer);
- `POST /v1/payment_intents/{id}/confirm` — what a buyer's browser/app calls, authorized by the
  intent's `client_secret` (or Bearer), with `payment_method=pm_card_visa` or
  `payment_method_data[card][number]=<test card>`;
- `POST /v1/refunds` (Bearer; payment_intent, amount?; idempotent by key);
- webhooks `payment_intent.succeeded`, `payment_intent.payment_failed`, `refund.updated`, signed
  `Stripe-Signature: t=..,v1=..` with the same secret, POSTed to the webhook URL (retried 5 times
  with backoff, at least once, in no guaranteed order).

Faults (tests, chaos drills): `app[STATE]["faults"][path]` is a list of `(http status, error code)`;
each request to `path` (e.g. "/v1/refunds") first takes the next one and fails with it, before
anything is done or remembered (so a retry with the same Idempotency-Key runs for real).

Test cards (any expiry/CVC):
    4242424242424242  pm_card_visa               succeeds
    4000000000000002  pm_card_chargeDeclined     declined (card_declined)
    4000000000009995  pm_card_insufficientFunds  declined (insufficient_funds)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from integrations.payments.signing import sign_header

log = logging.getLogger("foyer.sandbox")

CARDS = {
    "4242424242424242": None, "pm_card_visa": None,
    "4000000000000002": "card_declined", "pm_card_chargeDeclined": "card_declined",
    "4000000000009995": "insufficient_funds", "pm_card_insufficientFunds": "insufficient_funds",
}
SECRET: web.AppKey[str] = web.AppKey("sandbox.secret", str)
STATE: web.AppKey[dict] = web.AppKey("sandbox.state", dict)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, type_: str, message: str, code: str | None = None, **extra: Any) -> web.Response:
    err: dict[str, Any] = {"type": type_, "message": message, **extra}
    if code:
        err["code"] = code
    return _json({"error": err}, status)


def _authorized(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    return hmac.compare_digest(header.encode(), f"Bearer {request.app[SECRET]}".encode())


def _webhook_url(request: web.Request) -> str:
    state = request.app[STATE]
    if state.get("webhook_url"):
        return state["webhook_url"]
    # Mounted in a node: send webhooks back to that node.
    return str(request.url.origin()) + "/api/payments/webhooks/sandbox"


async def _idempotent(request: web.Request, form: dict[str, str], make: Any) -> web.Response:
    key = request.headers.get("Idempotency-Key")
    state = request.app[STATE]
    fp = hashlib.sha256(orjson.dumps(sorted(form.items())) + request.path.encode()).hexdigest()
    if key:
        seen = state["idempotency"].get(key)
        if seen is not None:
            if seen[0] != fp:
                return _error(400, "idempotency_error", "Keys for idempotent requests can only be used with the "
                              "same parameters they were first used with.")
            return web.Response(body=seen[2], status=seen[1], content_type="application/json",
                                headers={"Idempotent-Replayed": "true"})
    response = await make()
    if key:
        state["idempotency"][key] = (fp, response.status, response.body)
    return response


async def create_intent(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _error(401, "invalid_request_error", "Invalid API Key provided.")
    form = dict(await request.post())

    async def make() -> web.Response:
        try:
            amount = int(form.get("amount", ""))
        except ValueError:
            return _error(400, "invalid_request_error", "Missing or invalid amount.", param="amount")
        currency = str(form.get("currency", "")).lower()
        if amount < 1 or len(currency) != 3:
            return _error(400, "invalid_request_error", "Invalid amount or currency.", param="amount")
        intent_id = "pi_" + secrets.token_hex(12)
        intent = {
            "id": intent_id, "object": "payment_intent", "amount": amount, "currency": currency,
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(12)}", "status": "requires_payment_method",
            "created": int(time.time()), "livemode": False, "amount_received": 0, "latest_charge": None,
            "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[") and k.endswith("]")},
            "last_payment_error": None,
        }
        request.app[STATE]["intents"][intent_id] = intent
        return _json(intent)

    return await _idempotent(request, {k: str(v) for k, v in form.items()}, make)


async def get_intent(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _error(401, "invalid_request_error", "Invalid API Key provided.")
    intent = request.app[STATE]["intents"].get(request.match_info["id"])
    if intent is None:
        return _error(404, "invalid_request_error", "No such payment_intent", code="resource_missing")
    return _json(intent)


async def confirm_intent(request: web.Request) -> web.Response:
    form = dict(await request.post())
    intent = request.app[STATE]["intents"].get(request.match_info["id"])
    if intent is None:
        return _error(404, "invalid_request_error", "No such payment_intent", code="resource_missing")
    if not (_authorized(request) or hmac.compare_digest(str(form.get("client_secret", "")).encode(),
                                                        intent["client_secret"].encode())):
        return _error(401, "invalid_request_error", "Invalid client secret.")
    if intent["status"] == "succeeded":
        return _error(400, "invalid_request_error", "This PaymentIntent has already succeeded.",
                      code="payment_intent_unexpected_state")
    card = str(form.get("payment_method_data[card][number]") or form.get("payment_method") or "").replace(" ", "")
    if card not in CARDS:
        return _error(402, "card_error", "Your card number is incorrect.", code="incorrect_number")
    decline = CARDS[card]
    url = _webhook_url(request)
    if decline:
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = {"type": "card_error", "code": decline, "message": "Your card was declined."}
        _send(request.app, url, "payment_intent.payment_failed", intent)
        return _error(402, "card_error", "Your card was declined.", code=decline, decline_code=decline,
                      payment_intent=intent)
    intent.update(status="succeeded", amount_received=intent["amount"], last_payment_error=None,
                  latest_charge="ch_" + secrets.token_hex(12))
    _send(request.app, url, "payment_intent.succeeded", intent)
    return _json(intent)


def _fault(request: web.Request) -> web.Response | None:
    queue = request.app[STATE]["faults"].get(request.path)
    if not queue:
        return None
    status, code = queue.pop(0)
    kind = "api_error" if status >= 500 else "invalid_request_error"
    return _error(status, kind, f"sandbox fault injected ({code})", code=code)


async def create_refund(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _error(401, "invalid_request_error", "Invalid API Key provided.")
    fault = _fault(request)
    if fault is not None:
        return fault
    form = dict(await request.post())
    url = _webhook_url(request)

    async def make() -> web.Response:
        state = request.app[STATE]
        intent = state["intents"].get(str(form.get("payment_intent", "")))
        if intent is None or intent["status"] != "succeeded":
            return _error(400, "invalid_request_error", "This PaymentIntent cannot be refunded.",
                          code="charge_not_refundable")
        refunded = sum(r["amount"] for r in state["refunds"].values() if r["payment_intent"] == intent["id"])
        amount = int(form.get("amount") or intent["amount"] - refunded)
        if amount < 1 or refunded + amount > intent["amount"]:
            return _error(400, "invalid_request_error", "Refund amount exceeds the charge.",
                          code="amount_too_large")
        refund = {"id": "re_" + secrets.token_hex(12), "object": "refund", "amount": amount,
                  "currency": intent["currency"], "payment_intent": intent["id"], "charge": intent["latest_charge"],
                  "status": "succeeded", "created": int(time.time()), "metadata": {}}
        state["refunds"][refund["id"]] = refund
        _send(request.app, url, "refund.updated", refund)
        return _json(refund)

    return await _idempotent(request, {k: str(v) for k, v in form.items()}, make)


def _send(app: web.Application, url: str, type_: str, obj: dict[str, Any]) -> None:
    event = {"id": "evt_" + secrets.token_hex(12), "object": "event", "type": type_, "created": int(time.time()),
             "livemode": False, "api_version": "2024-06-20", "data": {"object": dict(obj)}}
    state = app[STATE]
    state["events"].append(event)
    task = asyncio.get_running_loop().create_task(_deliver(app, url, orjson.dumps(event)))
    state["tasks"].add(task)
    task.add_done_callback(state["tasks"].discard)


async def _deliver(app: web.Application, url: str, payload: bytes) -> None:
    state = app[STATE]
    for attempt in range(5):
        try:
            session: aiohttp.ClientSession = state["session"]
            headers = {"Content-Type": "application/json", "Stripe-Signature": sign_header(app[SECRET], payload)}
            async with session.post(url, data=payload, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status < 300:
                    return
                if 400 <= resp.status < 500 and resp.status != 409:
                    log.warning("sandbox webhook refused with %s: %s", resp.status, (await resp.text())[:200])
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("sandbox webhook attempt %d failed: %r", attempt + 1, exc)
        await asyncio.sleep(min(5.0, 0.2 * 3 ** attempt))
    log.warning("sandbox webhook to %s given up after 5 attempts", url)


def create_sandbox_app(secret: str, *, webhook_url: str = "") -> web.Application:
    app = web.Application()
    app[SECRET] = secret
    app[STATE] = {"intents": {}, "refunds": {}, "idempotency": {}, "events": [], "tasks": set(), "faults": {},
                  "webhook_url": webhook_url, "session": None}
    app.router.add_post("/v1/payment_intents", create_intent)
    app.router.add_get("/v1/payment_intents/{id}", get_intent)
    app.router.add_post("/v1/payment_intents/{id}/confirm", confirm_intent)
    app.router.add_post("/v1/refunds", create_refund)

    async def session_ctx(app: web.Application) -> Any:
        app[STATE]["session"] = aiohttp.ClientSession()
        yield
        for task in list(app[STATE]["tasks"]):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await app[STATE]["session"].close()

    app.cleanup_ctx.append(session_ctx)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Foyer's sandbox payment processor (Stripe-compatible subset).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--secret", required=True, help="API key and webhook signing secret")
    parser.add_argument("--webhook-url", required=True, help="e.g. http://127.0.0.1:8080/api/payments/webhooks/sandbox")
    args = parser.parse_args()
    web.run_app(create_sandbox_app(args.secret, webhook_url=args.webhook_url), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
