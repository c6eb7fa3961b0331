#!/usr/bin/env python3
"""Ticket-drop benchmark: Foyer (two nodes, Redis gate + group commit) vs a naive baseline.

    .venv/bin/python bench/ticket_bench.py [--seats 5000] [--buyers 200] [--quantity 2] [--restart-redis]

One command, loopback only, bounded in time. It starts what it needs:
- a fresh PostgreSQL database on the server named by --database-url / FOYER_TEST_DATABASE_URL
  (default postgresql://postgres@127.0.0.1:5432/postgres), dropped at the end;
- its own redis-server on a free port (so --restart-redis can kill and restart it mid-sale);
- two Foyer nodes (`run.py serve`) and two baseline processes (this file, `--baseline-server`);
then sells the same inventory (one ticket type of --seats seats) to --buyers concurrent buyers over
HTTP through each, and prints seats/s, the ratio, p50/p99 hold latency, the rate of `sold_out`
answers once sold out next to plain `GET /healthz`, and the invariant check (loadtests/verify.py).

Baseline: the same HTTP shape (POST /api/events/{id}/orders, bearer JWT verified, JSON items)
served by aiohttp + asyncpg doing, per order, one transaction: SELECT ... FOR UPDATE on the
ticket-type row, UPDATE held, INSERT the order and its item.
Buyer tokens are minted with the nodes' JWT secret (sign-up is not what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpumeter import CpuMeter  # noqa: E402
from bench.h1client import H1, rate, request_head  # noqa: E402

JWT_SECRET = "bench-jwt-secret-" + "x" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dsn_for(admin: str, db: str) -> str:
    p = urlsplit(admin)
    return urlunsplit((p.scheme, p.netloc, "/" + db, p.query, p.fragment))


# ------------------------------------------------------------------------------------------------
# The naive baseline server
# ------------------------------------------------------------------------------------------------

def baseline_server(port: int, dsn: str) -> None:
    import asyncpg
    import jwt
    import orjson
    import uvloop
    from aiohttp import web

    async def make_app() -> web.Application:
        app = web.Application()
        pool = await asyncpg.create_pool(dsn, min_size=5, max_size=20)

        async def place(request: web.Request) -> web.Response:
            token = request.headers.get("Authorization", "").partition(" ")[2]
            try:
                claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="foyer-api", issuer="foyer")
            except jwt.PyJWTError:
                return web.json_response({"error": {"code": "unauthorized"}}, status=401)
            body = orjson.loads(await request.read())
            item = body["items"][0]
            type_id, qty = uuid.UUID(item["ticket_type_id"]), int(item["quantity"])
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow("SELECT capacity, sold, held, price_cents, currency FROM ticket_types "
                                          "WHERE id = $1 FOR UPDATE", type_id)
                if row["capacity"] - row["sold"] - row["held"] < qty:
                    return web.json_response({"error": {"code": "sold_out", "message": "sold out"}}, status=409)
                await conn.execute("UPDATE ticket_types SET held = held + $2 WHERE id = $1", type_id, qty)
                order_id = await conn.fetchval(
                    """INSERT INTO orders (event_id, user_id, status, total_cents, currency, expires_at)
                       VALUES ($1, $2, 'held', $3, $4, now() + interval '10 minutes') RETURNING id""",
                    uuid.UUID(request.match_info["event_id"]), uuid.UUID(claims["sub"]), row["price_cents"] * qty,
                    row["currency"])
                await conn.execute("INSERT INTO order_items VALUES ($1, $2, $3, $4)", order_id, type_id, qty,
                                   row["price_cents"])
            return web.Response(body=orjson.dumps({"id": str(order_id), "status": "held"}), status=201,
                                content_type="application/json")

        async def healthz(request: web.Request) -> web.Response:
            return web.Response(body=b'{"status":"ok"}', content_type="application/json")

        app.router.add_post("/api/events/{event_id}/orders", place)
        app.router.add_get("/healthz", healthz)
        return app

    uvloop.install()
    web.run_app(make_app(), host="127.0.0.1", port=port, access_log=None, print=None, reuse_port=True)


# ------------------------------------------------------------------------------------------------
# Load generation: the lean HTTP/1.1 client of bench/h1client.py (the same for Foyer and the baseline)
# ------------------------------------------------------------------------------------------------

async def drop(urls: list[str], event_id: str, type_id: str, tokens: list[str], *, quantity: int,
               deadline_s: float, on_progress=None) -> dict:
    """Every buyer orders in a loop until it sees sold_out; returns timings and counts."""
    import orjson

    lat: list[float] = []
    counts: dict[int, int] = {}
    seats = 0
    last_ok = 0.0
    oks: list[float] = []  # completion times of the holds (timeline)
    start = time.perf_counter()
    stop_at = start + deadline_s
    body = orjson.dumps({"items": [{"ticket_type_id": type_id, "quantity": quantity}]})
    path = f"/api/events/{event_id}/orders"

    async def buyer(i: int) -> None:
        nonlocal seats, last_ok
        url = urls[i % len(urls)]
        conn = H1(url)
        try:
            while time.perf_counter() < stop_at:
                head = request_head("POST", url, path, tokens[i], body_len=len(body), key=uuid.uuid4().hex)
                t0 = time.perf_counter()
                try:
                    status, _ = await conn.request(head, body)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    status = 599
                now = time.perf_counter()
                counts[status] = counts.get(status, 0) + 1
                if status == 201:
                    lat.append(now - t0)
                    oks.append(now - start)
                    seats += quantity
                    last_ok = now
                    if on_progress:
                        on_progress(seats)
                elif status == 409:
                    return
                elif status >= 500:
                    await asyncio.sleep(0.05)
        finally:
            conn.close()

    await asyncio.gather(*(buyer(i) for i in range(len(tokens))))
    elapsed = (last_ok - start) if last_ok else float("nan")
    return {"seats": seats, "elapsed": elapsed, "seats_per_s": seats / elapsed if last_ok else 0.0,
            "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "statuses": counts,
            "first_ok_ms": min(oks) * 1000 if oks else float("nan"), "timeline": _timeline(oks, quantity)}


def _timeline(oks: list[float], quantity: int, step: float = 0.25) -> str:
    """Seats/s per `step` seconds of the sale: shows the cold start apart from the steady state."""
    if not oks:
        return ""
    buckets = [0] * (int(max(oks) / step) + 1)
    for t in oks:
        buckets[int(t / step)] += quantity
    return " ".join(f"{n / step:.0f}" for n in buckets)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] * 1000


# ------------------------------------------------------------------------------------------------
# Orchestration
# ------------------------------------------------------------------------------------------------

class Procs:
    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.logdir / f"{name}.log").open("wb")
        p = subprocess.Popen(args, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


async def node_counters(urls: list[str], names: tuple[str, ...]) -> dict[str, float]:
    """Sum of Prometheus counters over the nodes (e.g. holds per group-commit transaction)."""
    import aiohttp

    totals = dict.fromkeys(names, 0.0)
    async with aiohttp.ClientSession() as http:
        for url in urls:
            async with http.get(url + "/metrics") as r:
                for line in (await r.text()).splitlines():
                    name, _, value = line.partition(" ")
                    if name in totals:
                        totals[name] += float(value)
    return totals


async def wait_http(url: str, timeout: float = 60) -> None:
    import aiohttp

    end = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < end:
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def setup_sale(dsn: str, *, seats: int, buyers: int) -> tuple[str, str, str, str, list[str]]:
    """Users (SQL), two published events with one type of `seats` each, buyer tokens."""
    import asyncpg

    from domain.identity import Principal
    from domain.tokens import TokenService

    conn = await asyncpg.connect(dsn)
    try:
        owner = await conn.fetchval("INSERT INTO users (email, name, password_hash) VALUES ('org@bench', 'Org', 'x') "
                                    "RETURNING id")
        user_ids = [r["id"] for r in await conn.fetch(
            "INSERT INTO users (email, name, password_hash) SELECT 'b' || g || '@bench', 'B' || g, 'x' "
            "FROM generate_series(1, $1) g RETURNING id", buyers)]
        out = []
        for name in ("foyer", "baseline"):
            ev = await conn.fetchval(
                """INSERT INTO events (owner_id, slug, title, starts_at, ends_at, status, published_at)
                   VALUES ($1, $2, $2, now() + interval '1 day', now() + interval '2 days', 'published', now())
                   RETURNING id""", owner, f"bench-{name}")
            tt = await conn.fetchval(
                """INSERT INTO ticket_types (event_id, name, price_cents, currency, capacity, max_per_order)
                   VALUES ($1, 'General', 2500, 'EUR', $2, 10) RETURNING id""", ev, seats)
            out += [str(ev), str(tt)]
    finally:
        await conn.close()
    tokens = TokenService(secret=JWT_SECRET, issuer="foyer", audience="foyer-api", access_ttl_seconds=3600)
    return out[0], out[1], out[2], out[3], [tokens.issue_access(Principal(u)) for u in user_ids]


async def run(args: argparse.Namespace) -> int:
    import asyncpg

    from loadtests.verify import check

    admin = args.database_url
    dbname = "foyer_bench_" + secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix="foyer-bench-"))
    procs = Procs(workdir)
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{dbname}"')
    await conn.close()
    dsn = dsn_for(admin, dbname)
    redis_port = free_port()
    redis_bin = shutil.which("redis-server") or shutil.which("valkey-server")
    if redis_bin is None:
        print("needs redis-server (or valkey-server) on PATH", file=sys.stderr)
        return 2
    redis_args = [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    redis = procs.start("redis", redis_args)
    code = 1
    try:
        from cryptography.fernet import Fernet

        env = {k: v for k, v in os.environ.items() if not k.startswith("FOYER_")}
        env.update(FOYER_DATABASE_URL=dsn, FOYER_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                   FOYER_JWT_SECRET=JWT_SECRET, FOYER_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
                   FOYER_DATA_DIR=str(workdir), FOYER_LOG_LEVEL="WARNING", FOYER_DB_POOL_MAX="20")
        env.update(kv.split("=", 1) for kv in args.node_env)
        ports = [free_port(), free_port()]
        # Migrate once, then two nodes.
        subprocess.run([sys.executable, "run.py", "migrate"], cwd=str(ROOT), env=env, check=True,  # noqa: ASYNC221
                       stdout=subprocess.DEVNULL)
        for i, port in enumerate(ports):
            entry = os.environ.get("FOYER_BENCH_NODE_ENTRY") or "run.py"  # e.g. a profiling wrapper
            procs.start(f"node{i}", [sys.executable, entry, "serve"], env={**env, "FOYER_PORT": str(port),
                                                                              "FOYER_NODE_ID": f"bench-{i}"})
        base_port = free_port()
        for i in range(2):
            procs.start(f"baseline{i}", [sys.executable, __file__, "--baseline-server", str(base_port), dsn])
        foyer_urls = [f"http://127.0.0.1:{p}" for p in ports]
        base_urls = [f"http://127.0.0.1:{base_port}"]
        await asyncio.gather(*(wait_http(u + "/readyz") for u in foyer_urls), wait_http(base_urls[0] + "/healthz"))
        ev_f, tt_f, ev_b, tt_b, tokens = await setup_sale(dsn, seats=args.seats, buyers=args.buyers)
        print(f"inventory {args.seats} seats, {args.buyers} concurrent buyers, {args.quantity} seats per order, "
              f"2 Foyer nodes, 2 baseline processes, loopback")

        node_pids = [p.pid for p in procs.procs if p.args[2:3] == ["serve"]]
        base_pids = [p.pid for p in procs.procs if "--baseline-server" in p.args]
        groups = {"load generator": [os.getpid()], "Foyer nodes": node_pids, "baseline": base_pids,
                  "redis": [redis.pid]}
        meter = CpuMeter(groups, dbname)
        restarted = {"done": False}

        def maybe_restart(seats: int) -> None:
            if args.restart_redis and not restarted["done"] and seats >= args.seats * 0.4:
                restarted["done"] = True
                procs.stop(redis, signal.SIGKILL)
                groups["redis"] = [procs.start("redis2", redis_args).pid]
                print(f"  (redis killed and restarted empty at {seats} seats)")

        cpu: dict[str, str] = {}

        node_cpu: dict[str, float] = {}  # CPU seconds of the Foyer nodes per phase

        async def measured(name: str, coro):
            before, t0 = meter.snapshot(), time.perf_counter()
            result = await coro
            after = meter.snapshot()
            cpu[name] = CpuMeter.render(before, after, time.perf_counter() - t0)
            node_cpu[name] = after["Foyer nodes"] - before["Foyer nodes"]
            return result

        # The sale starts cold for both: caches and the gate are built by the first buyers, inside
        # the timing.
        foyer = await measured("Foyer sale", drop(foyer_urls, ev_f, tt_f, tokens, quantity=args.quantity,
                                                  deadline_s=args.max_seconds, on_progress=maybe_restart))
        tx = 'foyer_db_transaction_seconds_{}{{name="orders.hold_batch",ok="true"}}'
        batches = await node_counters(foyer_urls, ("foyer_tickets_hold_batches_total",
                                                   "foyer_tickets_hold_requests_total",
                                                   tx.format("sum"), tx.format("count")))
        baseline = await measured("baseline sale", drop(base_urls, ev_b, tt_b, tokens, quantity=args.quantity,
                                                        deadline_s=args.max_seconds))
        order_body = f'{{"items":[{{"ticket_type_id":"{tt_f}","quantity":{args.quantity}}}]}}'.encode()
        sold_out_rate, so_counts = await measured("sold_out", rate(
            foyer_urls, f"/api/events/{ev_f}/orders", tokens, seconds=args.rate_seconds, method="POST",
            body=order_body))
        health_rate, _ = await measured("/healthz", rate(foyer_urls, "/healthz", tokens, seconds=args.rate_seconds))
        markers = await node_counters(foyer_urls, ("foyer_tickets_marker_batches_total",
                                                   "foyer_tickets_marker_lookups_total"))
        report = await check(dsn, grace_seconds=60)

        ratio = foyer["seats_per_s"] / baseline["seats_per_s"] if baseline["seats_per_s"] else float("inf")
        print()
        print(f"{'':26}{'Foyer':>14}{'baseline':>14}")
        print(f"{'seats sold':26}{foyer['seats']:>14}{baseline['seats']:>14}")
        print(f"{'seats/s':26}{foyer['seats_per_s']:>14.0f}{baseline['seats_per_s']:>14.0f}")
        print(f"{'hold p50 (ms)':26}{foyer['p50_ms']:>14.1f}{baseline['p50_ms']:>14.1f}")
        print(f"{'hold p99 (ms)':26}{foyer['p99_ms']:>14.1f}{baseline['p99_ms']:>14.1f}")
        print(f"{'first hold after (ms)':26}{foyer['first_ok_ms']:>14.1f}{baseline['first_ok_ms']:>14.1f}")
        print(f"{'answers by status':26}{str(foyer['statuses']):>14}  {baseline['statuses']}")
        print(f"ratio Foyer/baseline seats/s: {ratio:.1f}x (target >= 10x)")
        n_batches = batches["foyer_tickets_hold_batches_total"]
        if n_batches:
            print(f"Foyer group commit: {batches['foyer_tickets_hold_requests_total']:.0f} holds in "
                  f"{n_batches:.0f} transactions ({batches['foyer_tickets_hold_requests_total'] / n_batches:.1f} "
                  "per transaction)")
            if batches[tx.format("count")]:
                print(f"Foyer group-commit transaction: {batches[tx.format('sum')] / batches[tx.format('count')] * 1000:.1f}"
                      f" ms on average ({batches[tx.format('count')]:.0f} transactions)")
        print(f"Foyer seats/s per 250 ms: {foyer['timeline']}")
        print(f"baseline seats/s per 250 ms: {baseline['timeline'][:200]}")
        print(f"sold_out answers once sold out: {sold_out_rate:.0f}/s {so_counts}; GET /healthz: {health_rate:.0f}/s;"
              f" ratio {sold_out_rate / health_rate:.0%} (target >= 80%)")
        if markers["foyer_tickets_marker_batches_total"]:
            print(f"Foyer Idempotency-Key marker lookups: {markers['foyer_tickets_marker_lookups_total']:.0f} in "
                  f"{markers['foyer_tickets_marker_batches_total']:.0f} MGETs "
                  f"({markers['foyer_tickets_marker_lookups_total'] / markers['foyer_tickets_marker_batches_total']:.1f}"
                  " per MGET)")
        so_n, hz_n = sum(so_counts.values()), health_rate * args.rate_seconds
        if so_n and hz_n:
            print(f"Foyer node CPU per answer: sold_out {node_cpu['sold_out'] / so_n * 1e6:.0f} us, "
                  f"/healthz {node_cpu['/healthz'] / hz_n * 1e6:.0f} us; per hold placed "
                  f"{node_cpu['Foyer sale'] / max(1, foyer['statuses'].get(201, 0)) * 1e6:.0f} us")
        print()
        for name, line in cpu.items():
            print(f"{name:>14}: {line}")
        print()
        print(report.render())
        oversold = foyer["seats"] > args.seats or baseline["seats"] > args.seats
        code = 0 if report.ok and not oversold else 1
    finally:
        procs.stop_all()
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await conn.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return code


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--baseline-server":
        baseline_server(int(sys.argv[2]), sys.argv[3])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--database-url", default=os.environ.get("FOYER_TEST_DATABASE_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="an existing database on the server to use (a fresh one is created beside it)")
    p.add_argument("--seats", type=int, default=5000)
    p.add_argument("--buyers", type=int, default=200)
    p.add_argument("--quantity", type=int, default=2, help="seats per order (same for both)")
    p.add_argument("--max-seconds", type=float, default=60, help="bound on each sale")
    p.add_argument("--rate-seconds", type=float, default=3, help="length of the sold_out and /healthz rate runs")
    p.add_argument("--restart-redis", action="store_true", help="kill and restart Redis (empty) mid-sale")
    p.add_argument("--node-env", action="append", default=[], metavar="FOYER_X=value",
                   help="extra setting for the Foyer nodes (repeatable), e.g. FOYER_EVENT_LOOP=uvloop")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
