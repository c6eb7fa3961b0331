"""The HTTP front door, one middleware: request id + client IP, CORS, metrics, errors, headers.

- Request ids: an incoming `X-Request-Id` (sane charset, ≤ 64 chars) is kept, else one is made;
  it is echoed in the response and put on every log line of the request.
- Client IP: `X-Forwarded-For`/`-Proto` are honoured only when the direct peer is one of
  `trusted_proxies`; otherwise they are ignored (no IP spoofing past rate limits).
- Errors: a `FoyerError` becomes `{"error": {code, message, details?}}` with its status; aiohttp's
  own HTTP errors (404 route, 405, 413) get the same shape; anything else is logged with the
  request id and answered `internal_error` without internals.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from domain.errors import FoyerError
from handlers.api import CLIENT_IP, REQUEST_ID, SCHEME, json_response
from server.metrics import METRICS

log = logging.getLogger("foyer.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, If-None-Match, X-Request-Id"

_AIOHTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request",
                  415: "unsupported_media_type"}


def error_body(code: str, message: str, details: object = None) -> dict:
    error: dict = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def _parse_networks(trusted: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c, strict=False) for c in trusted]


def _is_trusted(address: str | None, networks: list) -> bool:
    if not address or not networks:
        return False
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(addr in n for n in networks)


def resolve_client(
    peer: str | None, forwarded_for: str, forwarded_proto: str, scheme: str, networks: list
) -> tuple[str | None, str]:
    """(client IP, scheme) for a request: forwarded headers count only when the peer is a trusted proxy.

    X-Forwarded-For is walked from the nearest hop back, skipping our own proxies; the first
    untrusted hop is the client (a client cannot spoof its IP by sending the header itself).
    """
    if not _is_trusted(peer, networks):
        return peer, scheme
    client = peer
    hops = [p.strip() for p in forwarded_for.split(",") if p.strip()]
    for hop in reversed(hops):
        client = hop
        if not _is_trusted(hop, networks):
            break
    proto = forwarded_proto.lower()
    return client, proto if proto in ("http", "https") else scheme


def make_front_door(trusted: tuple[str, ...], origins: tuple[str, ...]) -> Callable:
    """The one middleware every request passes (one coroutine frame instead of four: it runs on
    every request, including every `sold_out` answer of a drop). In order:
    request id + client IP/scheme; CORS preflight (answered here); metrics around the handler;
    errors turned into the JSON envelope; then CORS, security and request-id response headers.
    """
    networks = _parse_networks(trusted)
    # Request ids made here: a random per-process prefix plus a counter. Unique across nodes and
    # restarts for log correlation, without a getrandom() syscall per request (uuid4).
    prefix = secrets.token_hex(6)
    counter = itertools.count(1)
    allowed = set(origins)
    allow_any = "*" in allowed

    @web.middleware
    async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else f"{prefix}{next(counter):x}"
        request[REQUEST_ID] = request_id
        client_ip, scheme = resolve_client(
            request.remote, request.headers.get("X-Forwarded-For", ""),
            request.headers.get("X-Forwarded-Proto", ""), request.scheme, networks,
        )
        request[CLIENT_IP] = client_ip or "unknown"
        request[SCHEME] = scheme
        origin = request.headers.get("Origin")
        origin_ok = bool(origin) and (allow_any or origin in allowed)
        if request.method == "OPTIONS" and origin and request.headers.get("Access-Control-Request-Method"):
            if not origin_ok:
                response: web.StreamResponse = json_response(error_body("forbidden", "origin not allowed"),
                                                             status=403)
            else:
                response = web.Response(status=204)
                response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
                response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await _observed(request, handler)
        headers = response.headers
        if origin_ok and origin:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Vary"] = "Origin"
            headers["Access-Control-Expose-Headers"] = "ETag, Retry-After, X-Request-Id, Location"
        for key, value in SECURITY_HEADERS.items():
            headers.setdefault(key, value)
        if scheme == "https":
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        headers["X-Request-Id"] = request_id
        return response

    return front_door


async def _observed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler, timed and counted by route template and status, its errors answered."""
    started = time.perf_counter()
    status = 500
    try:
        response = await _answered(request, handler)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects and the like pass through
        status = exc.status
        raise
    finally:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        request.app[METRICS].observe_request(request.method, route, status, time.perf_counter() - started)


async def _answered(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FoyerError as exc:
        request.app[METRICS].errors.labels(exc.code).inc()
        return json_response({"error": exc.as_payload()}, status=exc.status, headers=exc.headers or None)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.status == 101:
            raise
        code = _AIOHTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal_error")
        request.app[METRICS].errors.labels(code).inc()
        message = "no such route" if exc.status == 404 else exc.reason
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return json_response(error_body(code, message), status=exc.status, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, request.get(REQUEST_ID))
        request.app[METRICS].errors.labels("internal_error").inc()
        return json_response(
            error_body("internal_error", "something went wrong on our side", {"request_id": request.get(REQUEST_ID)}),
            status=500,
        )
