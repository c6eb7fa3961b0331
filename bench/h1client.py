"""A lean HTTP/1.1 keep-alive client for load generation, and `rate()`: requests/s answered to
N concurrent clients over a fixed time. Used by bench/ticket_bench.py (the sale, the `sold_out`
and `GET /healthz` rates) and bench/aiohttp_post_floor.py; the same client for Foyer and for
the baselines.

aiohttp's client costs several times the CPU of a raw request on this 2-core machine, where the
load generator shares the cores with the servers; a benchmark that measures its own client is
not measuring the servers. Each simulated client owns one keep-alive connection and writes
pre-encoded requests; responses are framed by Content-Length (or chunked, for safety).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urlsplit


class H1:
    """One HTTP/1.1 keep-alive connection to host:port (plain TCP, loopback)."""

    def __init__(self, url: str) -> None:
        p = urlsplit(url)
        self.host, self.port = p.hostname or "127.0.0.1", p.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                self.writer.write(head + body if body else head)
                return await self._response()
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        lower = raw.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            j = lower.index(b"\r\n", i + 2)
            body = await self.reader.readexactly(int(raw[i + 17:j]))
        elif b"transfer-encoding: chunked" in lower:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size + 2))
            body = b"".join(x[:-2] for x in parts)
        else:
            body = b""
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def request_head(method: str, url: str, path: str, token: str, *, body_len: int | None = None,
                 key: str | None = None) -> bytes:
    """The head of one request to `url` (Host from it) with a bearer token; with `body_len`, a JSON
    body of that length follows; with `key`, an Idempotency-Key."""
    p = urlsplit(url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {p.netloc}", f"Authorization: Bearer {token}"]
    if body_len is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {body_len}"]
    if key is not None:
        lines.append(f"Idempotency-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def rate(urls: list[str], path: str, tokens: list[str], *, seconds: float, method: str = "GET",
               body: bytes | None = None) -> tuple[float, dict[int, int]]:
    """Requests/s answered by `len(tokens)` concurrent clients for `seconds` (each its own
    keep-alive connection, a fresh Idempotency-Key per request)."""
    counts: dict[int, int] = {}
    done = 0
    end = time.perf_counter() + seconds

    async def client(i: int) -> None:
        nonlocal done
        url = urls[i % len(urls)]
        conn = H1(url)
        try:
            while time.perf_counter() < end:
                head = request_head(method, url, path, tokens[i], body_len=len(body) if body is not None else None,
                                    key=uuid.uuid4().hex)
                status, _ = await conn.request(head, body or b"")
                counts[status] = counts.get(status, 0) + 1
                done += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(len(tokens))))
    return done / (time.perf_counter() - t0), counts
