#!/usr/bin/env python3
"""Idle connections and mass disconnect on ONE node: Foyer vs a plain python-socketio app.

    python bench/idle_bench.py                  # 10,000 idle WebSocket clients, each in one room
    python bench/idle_bench.py --clients 2000 --skip-baseline

Measures, for each server: resident memory (RSS) of the node process with N authenticated,
joined, idle connections (and per connection), then closes all of them at once and reports how
long the node's event loop stalled: externally (the slowest `GET /healthz` answered during the
disconnect, polled every 10 ms) and, for Foyer, internally (`foyer_event_loop_lag_max_seconds`
from /metrics: the largest lateness of a 20 ms timer). Targets: < 1 GiB RSS for 10,000
connections; no stall > 100 ms. Loopback only, bounded; services as for bench/fanout_bench.py (bench/ws_nodes.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ws_nodes import NAMESPACE, PY, Services, start_servers, stop_servers, wait_http  # noqa: E402


async def idle_worker(cfg: dict[str, Any]) -> None:
    from bench.leanclient import Stats, open_conn

    stats = Stats()
    sem = asyncio.Semaphore(50)
    host, port = cfg["endpoint"]

    async def one(token: str | None) -> Any:
        async with sem:
            c = await open_conn(host, port, namespace=NAMESPACE, auth={"token": token} if token else {},
                                stats=stats, ready_timeout=180)
            if cfg["mode"] == "foyer":
                for attempt in range(8):  # like a real client: retry what the server says to retry
                    ack = await asyncio.wait_for(c.emit("room:join", {"room": cfg["room"]}), 120)
                    if ack.get("ok") or ack["error"]["code"] not in ("busy", "unavailable", "rate_limited"):
                        break
                    await asyncio.sleep(0.5 * (attempt + 1))
            else:
                ack = await asyncio.wait_for(c.emit("join", {"room": cfg["room"]}), 120)
            if not ack.get("ok"):
                raise RuntimeError(f"join failed: {ack}")
            return c

    conns = await asyncio.gather(*(one(t) for t in cfg["tokens"]))
    print(f"READY {len(conns)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    for c in conns:
        c.close()
    try:
        print("CLOSED", flush=True)
    except BrokenPipeError:
        pass
    await asyncio.sleep(1)


def rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


async def probe(port: int, stop: asyncio.Event) -> list[float]:
    import aiohttp

    times: list[float] = []
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    await r.read()
            except Exception:
                pass
            times.append(time.perf_counter() - t)
            await asyncio.sleep(0.01)
    return times


async def lag_buckets(port: int, name: str = "foyer_event_loop_lag_seconds", labels: str = "") -> dict[float, float]:
    """A node's histogram (cumulative counts by upper bound, seconds), e.g. its event-loop lag."""
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    out: dict[float, float] = {}
    for m in re.finditer(r'^' + name + r'_bucket\{' + labels + r'le="([^"]+)"\} (\S+)$', text, re.M):
        out[float(m.group(1))] = float(m.group(2))
    return out


async def gauge(port: int, name: str) -> float | None:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    m = re.search(r"^" + name + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def lag_during(before: dict[float, float], after: dict[float, float]) -> tuple[float | None, int]:
    """(upper bound of the largest lag seen between two scrapes, lags over 100 ms)."""
    if not after:
        return None, 0
    total = after[float("inf")] - before.get(float("inf"), 0)
    bound = None
    for le in sorted(after):
        if after[le] - before.get(le, 0) >= total:
            bound = le
            break
    over = int(total - (after.get(0.1, 0) - before.get(0.1, 0)))
    return bound, over


async def run(kind: str, svc: Services, args: argparse.Namespace, tokens: list[str], room: str) -> dict[str, Any]:
    servers = start_servers(kind, svc, n=1)
    port, proc = servers[0]
    try:
        await wait_http(port, proc)
        print(f"  {kind} node on port {port} (pid {proc.pid})", flush=True)
        await asyncio.sleep(1.0)
        base_rss = rss(proc.pid)
        workers = []
        per = (len(tokens) + args.workers - 1) // args.workers
        t_start = time.time()
        for w in range(args.workers):
            chunk = tokens[w * per:(w + 1) * per]
            cfg = {"mode": kind, "endpoint": ["127.0.0.1", port], "room": room,
                   "tokens": chunk if kind == "foyer" else [None] * len(chunk)}
            p = await asyncio.create_subprocess_exec(PY, __file__, "_worker", stdin=asyncio.subprocess.PIPE,
                                                     stdout=asyncio.subprocess.PIPE, cwd=ROOT, limit=2**26,
                                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
            assert p.stdin is not None
            p.stdin.write(json.dumps(cfg).encode() + b"\n")
            await p.stdin.drain()
            workers.append(p)
        for p in workers:
            line = await asyncio.wait_for(p.stdout.readline(), 600)  # type: ignore[union-attr]
            if not line.startswith(b"READY"):
                raise RuntimeError(f"worker failed: {line!r}")
        connect_s = time.time() - t_start
        print(f"  {len(tokens)} clients connected and joined in {connect_s:.1f} s; idle {args.settle:.0f} s, "
              "then all disconnect at once", flush=True)
        await asyncio.sleep(args.settle)
        loaded_rss = rss(proc.pid)
        lag_before = await lag_buckets(port) if kind == "foyer" else {}
        blocked_before = await lag_buckets(port, "foyer_event_loop_blocked_seconds") if kind == "foyer" else {}
        gc_before = await lag_buckets(port, "foyer_gc_pause_seconds", 'generation="2",') if kind == "foyer" else {}
        stop = asyncio.Event()
        probe_task = asyncio.create_task(probe(port, stop))
        await asyncio.sleep(0.5)
        t_close = time.perf_counter()
        print(f"  closing all at {time.strftime('%H:%M:%S')}", flush=True)
        for p in workers:
            p.stdin.write(b"CLOSE\n")  # type: ignore[union-attr]
            await p.stdin.drain()  # type: ignore[union-attr]
        for p in workers:
            await asyncio.wait_for(p.stdout.readline(), 60)  # type: ignore[union-attr]
        if kind == "foyer":  # until the node has processed every disconnect (bounded)
            deadline = time.time() + 60
            while time.time() < deadline and (await gauge(port, "foyer_socket_connections") or 0) > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        teardown_s = time.perf_counter() - t_close
        await asyncio.sleep(args.after)
        stop.set()
        times = await probe_task
        lag_after = await lag_buckets(port) if kind == "foyer" else {}
        lag_bound, stalls = lag_during(lag_before, lag_after)
        blocked_after = await lag_buckets(port, "foyer_event_loop_blocked_seconds") if kind == "foyer" else {}
        blocked_bound, blocked_stalls = lag_during(blocked_before, blocked_after)
        gc_after = await lag_buckets(port, "foyer_gc_pause_seconds", 'generation="2",') if kind == "foyer" else {}
        gc_bound, _ = lag_during(gc_before, gc_after)
        gc_full = int(gc_after.get(float("inf"), 0) - gc_before.get(float("inf"), 0))
        for p in workers:
            await p.wait()
        return {"clients": len(tokens), "connect_s": connect_s, "rss_idle_node": base_rss, "rss_loaded": loaded_rss,
                "per_conn_kib": (loaded_rss - base_rss) / len(tokens) / 1024,
                "healthz_max_ms": max(times) * 1000 if times else None,
                "healthz_p50_ms": sorted(times)[len(times) // 2] * 1000 if times else None,
                "loop_lag_max_ms": None if lag_bound is None else lag_bound * 1000,
                "loop_stalls_over_100ms": stalls if kind == "foyer" else None,
                "blocked_max_ms": None if blocked_bound is None else blocked_bound * 1000,
                "blocked_over_100ms": blocked_stalls if kind == "foyer" else None,
                "gc_full_collections": gc_full if kind == "foyer" else None,
                "gc_full_max_ms": None if gc_bound is None else gc_bound * 1000,
                "teardown_s": teardown_s if kind == "foyer" else None}
    finally:
        stop_servers(servers)


async def main_async(args: argparse.Namespace) -> int:
    svc = Services()
    svc.extra_env = dict(kv.split("=", 1) for kv in args.node_env)
    print(f"idle bench: {args.clients} idle WebSocket clients on one node, then a mass disconnect "
          f"({args.workers} client processes; {os.cpu_count()} cores shared)", flush=True)
    event_id, user_ids = await svc.setup(args.clients)
    tokens = svc.tokens(user_ids)
    out: dict[str, Any] = {}
    try:
        print("[foyer] connecting...", flush=True)
        out["foyer"] = await run("foyer", svc, args, tokens, f"event:{event_id}")
        if not args.skip_baseline:
            print("[python-socketio] connecting...", flush=True)
            out["baseline"] = await run("baseline", svc, args, tokens, "idle")
    finally:
        await svc.teardown()
    print(f"\n{'':28} {'Foyer':>14} {'python-socketio':>16}")
    rows = [("connect + join all (s)", "connect_s", ".1f"), ("node RSS, idle (MiB)", "rss_idle_node", "mib"),
            ("node RSS, N clients (MiB)", "rss_loaded", "mib"), ("per connection (KiB)", "per_conn_kib", ".1f"),
            ("mass disconnect: all torn down in (s)", "teardown_s", ".1f"),
            ("mass disconnect: slowest /healthz (ms)", "healthz_max_ms", ".0f"),
            ("mass disconnect: max loop lag <= (ms)", "loop_lag_max_ms", ".0f"),
            ("mass disconnect: loop stalls > 100 ms", "loop_stalls_over_100ms", "d"),
            ("  of which own work: max <= (ms)", "blocked_max_ms", ".0f"),
            ("  own-work stalls > 100 ms", "blocked_over_100ms", "d"),
            ("  full GCs in the window (count)", "gc_full_collections", "d"),
            ("  longest full GC <= (ms)", "gc_full_max_ms", ".0f")]
    for label, key, spec in rows:
        cells = []
        for side in ("foyer", "baseline"):
            v = out.get(side, {}).get(key)
            if v is None:
                cells.append("-")
            elif spec == "mib":
                cells.append(f"{v / 2**20:.0f}")
            else:
                cells.append(format(v, spec))
        print(f"{label:<40} {cells[0]:>10} {cells[1]:>16}")
    f = out["foyer"]
    print(f"\nTargets: {args.clients} idle connections < 1 GiB RSS: "
          f"{'yes' if f['rss_loaded'] < 2**30 else 'NO'} ({f['rss_loaded'] / 2**20:.0f} MiB); "
          f"mass disconnect stalls the loop <= 100 ms: "
          f"{'yes' if f['blocked_over_100ms'] == 0 else 'NO'} (largest lag from the node's own work <= "
          f"{f['blocked_max_ms']:.0f} ms; wall-clock lag incl. CPU starvation <= {f['loop_lag_max_ms']:.0f} ms; "
          f"slowest /healthz {f['healthz_max_ms']:.0f} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))  # noqa: ASYNC240
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        cfg = json.loads(sys.stdin.readline())
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(idle_worker(cfg))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--settle", type=float, default=3.0, help="seconds idle before measuring RSS")
    p.add_argument("--after", type=float, default=3.0, help="seconds to keep probing after the disconnect")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--json")
    p.add_argument("--node-env", action="append", default=[], metavar="FOYER_X=value",
                   help="extra setting for the Foyer node (repeatable), e.g. FOYER_EVENT_LOOP=uvloop")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
