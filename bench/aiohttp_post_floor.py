#!/usr/bin/env python3
"""The floor under the ticket bench's `sold_out` ratio: what aiohttp alone charges for a POST.

    .venv/bin/python bench/aiohttp_post_floor.py [--seconds 3] [--clients 100] [--loop both|fair|uvloop]

The issue asks for `sold_out` answers at >= 80 % of the rate of `GET /healthz`. A `sold_out`
answer is a POST with a JSON body to a templated route (`/api/events/{event_id}/orders`); a health
check is a GET to a fixed path. This bench serves canned answers with *no* application logic
from a bare aiohttp app (no middleware, no auth, no Redis) and measures, with the ticket bench's
load generator (bench/h1client.py), the rate and the server's CPU per answer for:

    GET  /healthz                          the reference
    GET  /plain409                         same, answering 409 (status and body size do not matter)
    GET  /api/events/{id}/orders           templated route
    POST /plainnoread                      POST with a body the handler never reads
    POST /plain                            POST, body read (`await request.read()`)
    POST /api/events/{id}/orders           what a sold_out answer costs aiohttp before any logic

A warm-up phase runs first (connection setup and first requests are not counted). Loopback only,
bounded, no services needed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CANNED_409 = b'{"error":{"code":"sold_out","message":"this ticket type is sold out"}}'


def serve(port: int, loop_kind: str) -> None:
    from aiohttp import web

    from server.eventloop import new_loop

    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    async def sold_out(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=CANNED_409, status=409, content_type="application/json")

    async def sold_out_unread(request: web.Request) -> web.Response:
        return web.Response(body=CANNED_409, status=409, content_type="application/json")

    app = web.Application()
    app.router.add_get("/healthz", ok)
    app.router.add_post("/api/events/{event_id}/orders", sold_out)
    app.router.add_get("/api/events/{event_id}/orders", ok)
    app.router.add_post("/plain", sold_out)
    app.router.add_post("/plainnoread", sold_out_unread)
    app.router.add_get("/plain409", sold_out_unread)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=new_loop(loop_kind))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(loop_kind: str, seconds: float, clients: int) -> dict[str, tuple[float, float]]:
    from bench.h1client import rate
    from bench.ws_nodes import free_port, wait_http

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "_serve", str(port), loop_kind])  # noqa: ASYNC220
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(port, server, within=30)
        tokens = ["x" * 180] * clients  # an Authorization header of a realistic size
        body = b'{"items":[{"ticket_type_id":"%s","quantity":2}]}' % str(uuid.uuid4()).encode()
        orders = f"/api/events/{uuid.uuid4()}/orders"
        await rate([url], "/healthz", tokens, seconds=1.0)  # warm-up, not counted
        out: dict[str, tuple[float, float]] = {}
        for name, path, method, payload in [
            ("GET  /healthz", "/healthz", "GET", None),
            ("GET  /plain409", "/plain409", "GET", None),
            ("GET  /api/events/{id}/orders", orders, "GET", None),
            ("POST /plainnoread", "/plainnoread", "POST", body),
            ("POST /plain", "/plain", "POST", body),
            ("POST /api/events/{id}/orders", orders, "POST", body),
        ]:
            cpu = _cpu_seconds(server.pid)
            per_s, counts = await rate([url], path, tokens, seconds=seconds, method=method, body=payload)
            answers = sum(counts.values())
            out[name] = (per_s, (_cpu_seconds(server.pid) - cpu) / answers * 1e6)
        return out
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "_serve":
        serve(int(sys.argv[2]), sys.argv[3])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--loop", choices=("both", "fair", "uvloop"), default="both")
    args = p.parse_args()
    from importlib.metadata import version

    import uvloop

    print(f"bare aiohttp {version('aiohttp')}: canned answers, no application logic; {args.clients} keep-alive "
          f"clients, {args.seconds:.0f} s per row, {os.cpu_count()} cores shared with the load generator")
    for kind in ("fair", "uvloop") if args.loop == "both" else (args.loop,):
        out = uvloop.run(measure(kind, args.seconds, args.clients))
        ref_rate, ref_cpu = out["GET  /healthz"]
        print(f"\n[{kind} loop]  {'answers/s':>10} {'CPU us/answer':>14} {'rate vs /healthz':>17}")
        for name, (per_s, cpu_us) in out.items():
            print(f"{name:<32} {per_s:>10.0f} {cpu_us:>14.1f} {per_s / ref_rate:>16.0%}")
        sold = out["POST /api/events/{id}/orders"]
        print(f"=> a sold_out-shaped POST with no logic at all reaches {sold[0] / ref_rate:.0%} of /healthz's rate "
              f"({ref_cpu / sold[1]:.0%} by CPU per answer); the issue's target is 80 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
