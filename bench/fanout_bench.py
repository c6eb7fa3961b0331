#!/usr/bin/env python3
"""Fan-out benchmark: one room of N WebSocket clients over two nodes sharing Redis, chat sent at
rising rates; Foyer side by side with a plain python-socketio app (AsyncRedisManager, two nodes,
`sio.emit(..., room=...)` as its documentation shows), measured in the same run.

    python bench/fanout_bench.py                     # 1,000 clients, 10..100 msg/s, + kill-a-node
    python bench/fanout_bench.py --clients 200 --rates 10,50 --step-seconds 5 --skip-kill

For each rate step it prints deliveries/s, p50/p99 delivery latency (client receive time minus
the server timestamp `ts` in each message) and lost messages (acked messages × clients −
deliveries; Foyer also checks every client's per-room seq for gaps and duplicates). The kill
scenario SIGKILLs one node mid-stream: its clients reconnect to the other node (Foyer: with
`last_seq`, replay) and the bench counts what each client missed.

Everything is bounded and loopback-only: nodes on 127.0.0.1, a fresh PostgreSQL database
(FOYER_BENCH_DATABASE_URL / FOYER_TEST_DATABASE_URL admin DSN, default
postgresql://postgres@127.0.0.1:5432/postgres) and a unique Redis prefix (FOYER_BENCH_REDIS_URL /
FOYER_TEST_REDIS_URL, default redis://127.0.0.1:6379/0), all removed at the end (bench/ws_nodes.py).
Load generators are lean raw-WebSocket clients (bench/leanclient.py) in `--workers` processes;
they share the machine's cores with the nodes, so figures are conservative. Benchmark output is
not committed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ws_nodes import (  # noqa: E402
    NAMESPACE,
    PY,
    Services,
    run_baseline,
    start_servers,
    stop_servers,
    wait_http,
)

# ------------------------------------------------------------------------------------------------
# Load-generating worker (a separate process)
# ------------------------------------------------------------------------------------------------

async def worker_main(cfg: dict[str, Any]) -> None:
    from bench.leanclient import Conn, Stats, open_conn

    stats = Stats()
    mode = cfg["mode"]
    room = cfg["room"]
    endpoints = [tuple(e) for e in cfg["endpoints"]]
    conns: list[Conn] = []
    reconnects: list[float] = []
    loop = asyncio.get_running_loop()
    lost_at: dict[int, float] = {}
    pending_reconnects: set[asyncio.Task[None]] = set()

    async def join(c: Conn, *, rejoin: bool = False) -> None:
        if mode == "foyer":
            payload: dict[str, Any] = {"room": room}
            if rejoin and c.last_seq:
                payload["last_seq"] = c.last_seq
                if c.epoch:
                    payload["epoch"] = c.epoch

            def apply(ack: dict[str, Any]) -> None:  # in wire order: before the live events after it
                if not ack.get("ok"):
                    return
                c.epoch = ack.get("epoch") or c.epoch
                if rejoin:
                    if ack.get("resync"):
                        c.gaps += 10**9  # a resync in the kill scenario is a failure: make it visible
                    for item in ack.get("history", []):
                        if item["event"] == "chat:message":
                            c.see(item["data"]["seq"])
                            text = item["data"].get("text", "")
                            step = int(text[1:text.index("|")]) if text.startswith("s") and "|" in text else -1
                            stats.replayed[step] = stats.replayed.get(step, 0) + 1
                elif c.last_seq == 0:
                    c.last_seq = ack["seq"]
                    c.first_seq = ack["seq"] + 1

            for attempt in range(8):  # like a real client: retry what the server says to retry
                ack = await asyncio.wait_for(c.emit("room:join", payload, on_ack=apply), 60)
                if ack.get("ok") or ack["error"]["code"] not in ("busy", "unavailable", "rate_limited"):
                    break
                await asyncio.sleep(0.5 * (attempt + 1))
            if not ack.get("ok"):
                raise RuntimeError(f"join failed: {ack}")
        else:
            ack = await asyncio.wait_for(c.emit("join", {"room": room}), 60)
            if not ack.get("ok"):
                raise RuntimeError(f"join failed: {ack}")

    def on_lost(old: Conn) -> None:
        if not cfg.get("reconnect") or getattr(old, "stopping", False):
            return
        lost_at[id(old)] = loop.time()
        task = loop.create_task(reconnect(old))
        pending_reconnects.add(task)
        task.add_done_callback(pending_reconnects.discard)

    async def reconnect(old: Conn) -> None:
        host, port = endpoints[cfg["survivor"]]
        for attempt in range(50):
            try:
                new = await open_conn(host, port, namespace=NAMESPACE, auth=old.auth, stats=stats,
                                      on_lost=on_lost, track_seq=old.track_seq)
                for attr in ("last_seq", "first_seq", "epoch", "gaps", "dups", "live"):
                    setattr(new, attr, getattr(old, attr))
                await join(new, rejoin=True)
                conns[conns.index(old)] = new
                reconnects.append(loop.time() - lost_at[id(old)])
                return
            except Exception:
                await asyncio.sleep(0.1 * (attempt + 1))
        print(f"reconnect failed for a client of worker {cfg['worker']}", file=sys.stderr, flush=True)

    sem = asyncio.Semaphore(64)

    async def connect_one(spec: dict[str, Any]) -> Conn:
        host, port = endpoints[spec["node"]]
        auth = {"token": spec["token"]} if mode == "foyer" else {}
        async with sem:
            c = await open_conn(host, port, namespace=NAMESPACE, auth=auth, stats=stats, on_lost=on_lost,
                                track_seq=(mode == "foyer"))
            await join(c)
        return c

    conns.extend(await asyncio.gather(*(connect_one(s) for s in cfg["clients"])))
    print(f"READY {len(conns)}", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    t0 = float(line.split()[1])
    senders = list(range(cfg["senders"]))
    acked_max_seq = 0
    sent_total = 0

    def on_ack(step: int, fut: asyncio.Future[Any]) -> None:
        nonlocal acked_max_seq
        if fut.cancelled() or fut.exception() is not None:
            stats.failed[step] = stats.failed.get(step, 0) + 1
            return
        ack = fut.result()
        if ack.get("ok"):
            stats.acked[step] = stats.acked.get(step, 0) + 1
            acked_max_seq = max(acked_max_seq, ack.get("seq") or 0)
        else:
            stats.failed[step] = stats.failed.get(step, 0) + 1

    await asyncio.sleep(max(0.0, t0 - time.time()))
    for step, rate, seconds in cfg["steps"]:
        start = time.time()
        sent = 0
        while True:
            elapsed = time.time() - start
            if elapsed >= seconds:
                break
            due = int(elapsed * rate) - sent
            for _ in range(max(0, due)):
                c = conns[senders[sent_total % len(senders)]] if senders else None
                sent += 1
                sent_total += 1
                if c is None or c.closed:
                    stats.failed[step] = stats.failed.get(step, 0) + 1
                    continue
                text = f"s{step}|w{cfg['worker']}-{sent_total}"
                fut = c.emit("chat:send", {"room": room, "text": text, "client_id": f"{cfg['run']}-{cfg['worker']}-{sent_total}"})
                fut.add_done_callback(lambda f, step=step: on_ack(step, f))
            await asyncio.sleep(0.005)
    await asyncio.sleep(cfg["drain"])
    if pending_reconnects:
        await asyncio.wait(pending_reconnects, timeout=30)
        await asyncio.sleep(cfg["drain"])
    result = {
        "worker": cfg["worker"],
        "received": stats.received,
        "replayed": stats.replayed,
        "acked": stats.acked,
        "failed": stats.failed,
        "acked_max_seq": acked_max_seq,
        "hist": {str(k): _histogram(v) for k, v in stats.latency.items()},
        "clients": [[c.first_seq, c.last_seq, c.gaps, c.dups, c.live] for c in conns],
        "reconnects": reconnects,
    }
    for c in conns:
        c.stopping = True  # type: ignore[attr-defined]
        c.close()
    print("RESULT " + json.dumps(result), flush=True)


def _histogram(values: list[float]) -> dict[str, int]:
    hist: dict[str, int] = {}
    for v in values:
        k = str(max(0, int(v)))
        hist[k] = hist.get(k, 0) + 1
    return hist


# ------------------------------------------------------------------------------------------------
# Orchestration
# ------------------------------------------------------------------------------------------------

async def run_load(kind: str, ports: list[int], *, tokens: list[str], room: str, args: argparse.Namespace,
                   steps: list[tuple[int, float, float]], kill: subprocess.Popen | None = None,
                   kill_at: float | None = None) -> list[dict[str, Any]]:
    """Start worker processes, wait until every client joined, run the schedule, collect results."""
    n = len(tokens)
    workers = args.workers
    senders_total = max(1, args.senders)
    specs: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
    for i, tok in enumerate(tokens):
        specs[i % workers].append({"token": tok, "node": i % len(ports)})
    procs = []
    run_id = secrets.token_hex(4)
    for w in range(workers):
        clients = specs[w]
        senders = senders_total // workers + (1 if w < senders_total % workers else 0)
        if kill is not None:  # senders must survive the kill: put them first, on the surviving node
            clients.sort(key=lambda s: s["node"] != 1)
        cfg = {
            "mode": kind, "room": room, "worker": w, "endpoints": [["127.0.0.1", p] for p in ports],
            "clients": clients, "senders": senders,
            "steps": [[s, r / workers * 1.0, d] for s, r, d in steps],
            "drain": args.drain, "reconnect": kill is not None, "survivor": 1,
            "run": run_id,  # client_ids are unique per run: a reused one is (rightly) deduplicated
        }
        p = await asyncio.create_subprocess_exec(PY, __file__, "_worker", stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE, cwd=ROOT, limit=2**26,
                                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert p.stdin is not None
        p.stdin.write(json.dumps(cfg).encode() + b"\n")
        await p.stdin.drain()
        procs.append(p)
    t_connect = time.time()
    for p in procs:
        assert p.stdout is not None
        line = await asyncio.wait_for(p.stdout.readline(), 300)
        if not line.startswith(b"READY"):
            raise RuntimeError(f"worker failed: {line!r}")
    print(f"  {n} clients connected and joined in {time.time() - t_connect:.1f} s", flush=True)
    t0 = time.time() + 1.0
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"GO {t0}\n".encode())
        await p.stdin.drain()
    if kill is not None and kill_at is not None:
        await asyncio.sleep(max(0.0, t0 + kill_at - time.time()))
        kill.send_signal(signal.SIGKILL)
        print(f"  killed node pid {kill.pid} at t={kill_at:.1f} s", flush=True)
    results = []
    for p in procs:
        assert p.stdout is not None
        while True:
            line = await asyncio.wait_for(p.stdout.readline(), 600)
            if not line:
                raise RuntimeError("worker exited without a result")
            if line.startswith(b"RESULT "):
                results.append(json.loads(line[7:]))
                break
        await p.wait()
    return results


def summarize(results: list[dict[str, Any]], steps: list[tuple[int, float, float]], n_clients: int) -> list[dict]:
    rows = []
    for step, rate, seconds in steps:
        k = str(step)
        received = sum(r["received"].get(k, 0) + r.get("replayed", {}).get(k, 0) for r in results)
        replayed = sum(r.get("replayed", {}).get(k, 0) for r in results)
        acked = sum(r["acked"].get(k, 0) for r in results)
        failed = sum(r["failed"].get(k, 0) for r in results)
        hist: dict[int, int] = {}
        for r in results:
            for ms, c in r["hist"].get(k, {}).items():
                hist[int(ms)] = hist.get(int(ms), 0) + c
        rows.append({"rate": rate, "seconds": seconds, "acked": acked, "failed": failed,
                     "deliveries_per_s": received / seconds, "expected": acked * n_clients,
                     "received": received, "replayed": replayed, "lost": max(0, acked * n_clients - received),
                     "extra": max(0, received - acked * n_clients),
                     "p50": _pct(hist, 0.50), "p99": _pct(hist, 0.99), "max": max(hist) if hist else None})
    return rows


def _pct(hist: dict[int, int], q: float) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    target = q * total
    acc = 0
    for ms in sorted(hist):
        acc += hist[ms]
        if acc >= target:
            return float(ms)
    return float(max(hist))


def seq_check(results: list[dict[str, Any]]) -> dict[str, int]:
    final = max(r["acked_max_seq"] for r in results)
    gaps = dups = tail = 0
    for r in results:
        for _first, last, g, d, _live in r["clients"]:
            gaps += g
            dups += d
            tail += max(0, final - last)
    return {"final_seq": final, "gaps": gaps, "dups": dups, "tail_missing": tail}


def fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def print_table(title: str, foyer: list[dict] | None, base: list[dict] | None, target_p99: float) -> None:
    print(f"\n{title}")
    print(f"{'msg/s':>6} | {'Foyer deliv/s':>13} {'p50 ms':>7} {'p99 ms':>7} {'lost':>7} {'ok':>3} | "
          f"{'python-socketio deliv/s':>23} {'p50 ms':>7} {'p99 ms':>7} {'lost':>7} {'ok':>3}")
    n = len(foyer or base or [])
    for i in range(n):
        cells = []
        for rows in (foyer, base):
            if rows is None:
                cells.append(f"{'(skipped)':>13} {'':>7} {'':>7} {'':>7} {'':>3}")
                continue
            r = rows[i]
            ok = r["lost"] == 0 and r["failed"] == 0 and r["p99"] is not None and r["p99"] <= target_p99
            cells.append(f"{r['deliveries_per_s']:>13.0f} {fmt(r['p50']):>7} {fmt(r['p99']):>7} "
                         f"{r['lost']:>7} {'yes' if ok else 'NO':>3}")
        rate = (foyer or base)[i]["rate"]  # type: ignore[index]
        print(f"{rate:>6.0f} | {cells[0]} | {cells[1].rjust(23 + 25)}")


async def scenario(kind: str, svc: Services, args: argparse.Namespace, tokens: list[str], room: str,
                   steps: list[tuple[int, float, float]], *, kill: bool) -> tuple[list[dict], dict | None, list[float]]:
    servers = start_servers(kind, svc)
    try:
        await asyncio.gather(*(wait_http(p, proc) for p, proc in servers))
        ports = [p for p, _ in servers]
        print(f"  {kind} nodes on ports {ports} (pids {[proc.pid for _, proc in servers]})", flush=True)
        results = await run_load(kind, ports, tokens=tokens, room=room, args=args, steps=steps,
                                 kill=servers[0][1] if kill else None, kill_at=args.kill_at if kill else None)
        rows = summarize(results, steps, len(tokens))
        check = seq_check(results) if kind == "foyer" else None
        reconnects = sorted(x for r in results for x in r["reconnects"])
        return rows, check, reconnects
    finally:
        stop_servers(servers)


async def main_async(args: argparse.Namespace) -> int:
    rates = [float(x) for x in args.rates.split(",")]
    svc = Services()
    svc.extra_env = dict(kv.split("=", 1) for kv in args.node_env)
    print(f"fan-out bench: {args.clients} clients over 2 nodes, rates {rates} msg/s, {args.step_seconds:.0f} s each; "
          f"{args.workers} load processes, {args.senders} senders; {os.cpu_count()} cores shared", flush=True)
    event_id, user_ids = await svc.setup(args.clients)
    tokens = svc.tokens(user_ids)
    room = f"event:{event_id}"
    steps = [(i, r, args.step_seconds) for i, r in enumerate(rates)]
    out: dict[str, Any] = {}
    try:
        print("\n[foyer] rising rates", flush=True)
        foyer_rows, foyer_check, _ = await scenario("foyer", svc, args, tokens, room, steps, kill=False)
        out["foyer"] = {"steps": foyer_rows, "seq": foyer_check}
        base_rows = None
        if not args.skip_baseline:
            print("\n[python-socketio] rising rates", flush=True)
            base_rows, _, _ = await scenario("baseline", svc, args, tokens, "bench", steps, kill=False)
            out["baseline"] = {"steps": base_rows}
        print_table("Deliveries into one room (target: >= 50 msg/s x 1,000 clients, p99 <= 250 ms, 0 lost)",
                    foyer_rows, base_rows, args.target_p99)
        print(f"Foyer per-client seq check: {foyer_check}")
        if not args.skip_kill:
            kill_steps = [(100, args.kill_rate, args.kill_seconds)]
            room2 = f"event:{event_id}"
            print(f"\n[foyer] kill-a-node: {args.kill_rate:.0f} msg/s for {args.kill_seconds:.0f} s, "
                  f"node 1 SIGKILLed at t={args.kill_at:.0f} s", flush=True)
            k_rows, k_check, k_rec = await scenario("foyer", svc, args, tokens, room2, kill_steps, kill=True)
            out["foyer_kill"] = {"steps": k_rows, "seq": k_check, "reconnects": len(k_rec)}
            b_rows = None
            if not args.skip_baseline:
                print("\n[python-socketio] kill-a-node (clients rejoin on the other node)", flush=True)
                b_rows, _, b_rec = await scenario("baseline", svc, args, tokens, "bench2", kill_steps, kill=True)
                out["baseline_kill"] = {"steps": b_rows, "reconnects": len(b_rec)}
            print("\nKill a node mid-stream (its clients reconnect to the other node)")
            print(f"  Foyer: {len(k_rec)} clients reconnected (p50 {fmt(_q(k_rec, .5), '.2f')} s, "
                  f"max {fmt(_q(k_rec, 1.0), '.2f')} s); per-client seq: gaps {k_check['gaps']}, duplicates "
                  f"{k_check['dups']}, missing at the end {k_check['tail_missing']} "
                  f"(final seq {k_check['final_seq']}); deliveries lost {k_rows[0]['lost']} of {k_rows[0]['expected']} "
                  f"({k_rows[0]['replayed']} replayed on rejoin), live p99 {fmt(k_rows[0]['p99'])} ms")
            if b_rows is not None:
                print(f"  python-socketio: {len(b_rec)} clients reconnected; deliveries lost {b_rows[0]['lost']} "
                      f"of {b_rows[0]['expected']} (no replay)")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))  # noqa: ASYNC240
    finally:
        await svc.teardown()
    return 0


def _q(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * (len(values) - 1)))]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        run_baseline(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        cfg = json.loads(sys.stdin.readline())
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(worker_main(cfg))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rates", default="10,25,50,75,100", help="messages per second into the room, per step")
    p.add_argument("--step-seconds", type=float, default=8.0)
    p.add_argument("--drain", type=float, default=3.0, help="seconds to wait for stragglers after the last step")
    p.add_argument("--workers", type=int, default=4, help="load-generator processes")
    p.add_argument("--senders", type=int, default=20, help="clients that send (spread over the workers)")
    p.add_argument("--target-p99", type=float, default=250.0)
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--skip-kill", action="store_true")
    p.add_argument("--kill-rate", type=float, default=50.0)
    p.add_argument("--kill-seconds", type=float, default=12.0)
    p.add_argument("--kill-at", type=float, default=4.0)
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--node-env", action="append", default=[], metavar="FOYER_X=value",
                   help="extra setting for the Foyer nodes (repeatable)")
    args = p.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
