"""Stripe-style webhook signatures: header `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`.

`verify` accepts any of several `v1=` values (secret rotation) and rejects timestamps older (or
newer) than `tolerance` seconds, so a captured webhook cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from domain.errors import FoyerError


def signature(secret: str, payload: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def sign_header(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, payload, t)}"


def verify(header: str | None, payload: bytes, secret: str, *, tolerance: int, now: float | None = None) -> None:
    if not header:
        raise FoyerError("invalid_signature", "missing signature header")
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    candidates = [v.strip() for k, v in parts if k.strip() == "v1"]
    try:
        t = int(stamps[0])
    except (IndexError, ValueError):
        raise FoyerError("invalid_signature", "malformed signature header") from None
    expected = signature(secret, payload, t)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise FoyerError("invalid_signature", "signature does not match")
    if abs((time.time() if now is None else now) - t) > tolerance:
        raise FoyerError("invalid_signature", "signature timestamp outside the tolerance window")
