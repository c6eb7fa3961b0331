#!/usr/bin/env python3
"""The floor under Foyer's mass-disconnect figure: a bare aiohttp + uvloop WebSocket server.

    .venv/bin/python bench/aiohttp_close_floor.py [--clients 10000] [--workers 4] [--loop uvloop|fair|both]

A server with nothing but a WebSocket route (a receive loop per connection, as aiohttp's
documentation shows) and a 20 ms event-loop probe; `--clients` raw WebSocket clients in
`--workers` processes connect, idle, then all send a close frame and close at once. Prints the
largest loop stall (and the server thread's CPU time within it) before and during the close.
Foyer's `bench/idle_bench.py` measures the same stall on a real node; this shows how much of it
aiohttp and uvloop cost on their own, and what Foyer's `fair` loop (server/eventloop.py: at most
64 ready sockets per pass) does to the same server. Loopback only, bounded, no services needed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request


def serve(port: int, loop_kind: str) -> None:
    from aiohttp import web

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from server.eventloop import new_loop

    worst = {"lag": 0.0, "cpu": 0.0}

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoclose=False, compress=False)
        await ws.prepare(request)
        while True:
            msg = await ws.receive(timeout=45)
            if msg.type not in (web.WSMsgType.TEXT, web.WSMsgType.BINARY):
                break
        if not ws.closed:
            await ws.close()
        return ws

    async def lag(request: web.Request) -> web.Response:
        out = {"max_lag_ms": round(worst["lag"] * 1000, 1), "cpu_ms": round(worst["cpu"] * 1000, 1)}
        worst.update(lag=0.0, cpu=0.0)
        return web.json_response(out)

    async def probe(app: web.Application):  # type: ignore[no-untyped-def]
        async def run() -> None:
            loop = asyncio.get_running_loop()
            while True:
                start, cpu = loop.time(), time.thread_time()
                await asyncio.sleep(0.02)
                late = loop.time() - start - 0.02
                if late > worst["lag"]:
                    worst.update(lag=late, cpu=time.thread_time() - cpu)

        task = asyncio.create_task(run())
        yield
        task.cancel()

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/lag", lag)
    app.cleanup_ctx.append(probe)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=4096,
                loop=new_loop(loop_kind))


async def clients(port: int, n: int) -> None:
    conns: list[asyncio.StreamWriter] = []
    sem = asyncio.Semaphore(100)

    async def one() -> None:
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(f"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            await reader.readuntil(b"\r\n\r\n")
            conns.append(writer)

    await asyncio.gather(*(one() for _ in range(n)))
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for writer in conns:  # a masked close frame (code 1000), then FIN: what a browser sends
        writer.write(bytes((0x88, 0x82)) + b"\x00\x00\x00\x00" + b"\x03\xe8")
        writer.close()
    print("CLOSED", flush=True)
    await asyncio.sleep(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "_serve":
        serve(int(sys.argv[2]), sys.argv[3])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "_clients":
        import uvloop

        uvloop.run(clients(int(sys.argv[2]), int(sys.argv[3])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--loop", choices=("uvloop", "fair", "both"), default="both")
    args = p.parse_args()
    for kind in ("uvloop", "fair") if args.loop == "both" else (args.loop,):
        run_one(args, kind)
    return 0


def run_one(args: argparse.Namespace, loop_kind: str) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "_serve", str(port), loop_kind])
    workers: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/lag", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        per = args.clients // args.workers
        workers = [subprocess.Popen([sys.executable, __file__, "_clients", str(port), str(per)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(args.workers)]
        for w in workers:
            if not w.stdout.readline().startswith(b"READY"):  # type: ignore[union-attr]
                raise RuntimeError("a client process failed")
        time.sleep(3)
        idle = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/lag"))
        for w in workers:
            w.stdin.write(b"CLOSE\n")  # type: ignore[union-attr]
            w.stdin.flush()  # type: ignore[union-attr]
        for w in workers:
            w.stdout.readline()  # type: ignore[union-attr]
        time.sleep(4)
        closing = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/lag"))
        from importlib.metadata import version

        loop_name = f"uvloop {version('uvloop')}" if loop_kind == "uvloop" else "the fair loop (64 per pass)"
        print(f"bare aiohttp {version('aiohttp')} + {loop_name}, {per * args.workers} WebSockets on one process")
        print(f"  connect + idle: max loop stall {idle['max_lag_ms']} ms (own CPU {idle['cpu_ms']} ms)")
        print(f"  mass close:     max loop stall {closing['max_lag_ms']} ms (own CPU {closing['cpu_ms']} ms)")
    finally:
        for w in workers:
            w.kill()
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
