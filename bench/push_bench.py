"""Push send throughput: Foyer's FCM adapter vs pyfcm used as its documentation shows, same run.

Both talk HTTP v1 (OAuth2 service-account token + `messages:send`) to the local FCM-compatible
server (integrations/push/fake_fcm.py) on 127.0.0.1, for the same N device tokens:
- baseline: one `FCMNotification(...).notify(fcm_token=...)` call after the other (pyfcm's README);
- Foyer: `FcmAdapter.send_many` (pyfcm payloads and sessions, sends spread over a thread pool).
The server adds a simulated round trip (`--latency-ms`, default 30) to every send, since the real
endpoint is a WAN hop away; with 0 the figure measures only this machine's CPU (both sides share
it). Prints messages per second for both and the ratio. Bounded (N messages), loopback only.

    .venv/bin/python bench/push_bench.py --messages 500 --threads 8 --latency-ms 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integrations.push.fake_fcm import FakeFcm, make_service_account  # noqa: E402
from integrations.push.fcm import FcmAdapter, Outcome, PushMessage  # noqa: E402

PROJECT = "foyer-bench"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=30.0,
                        help="simulated FCM round trip per send (Google's endpoint is tens of ms away)")
    args = parser.parse_args()
    n = max(1, min(args.messages, 50_000))

    info, public_pem = make_service_account(project_id=PROJECT, token_uri="http://placeholder/token")
    fake = FakeFcm(project_id=PROJECT, public_key_pem=public_pem, client_email=info["client_email"],
                   latency=args.latency_ms / 1000)
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    info = {**info, "token_uri": f"{base}/token"}
    tokens = [f"bench-token-{i:06d}" for i in range(n)]
    try:
        baseline = await asyncio.to_thread(_baseline, info, base, tokens)
        foyer = await _foyer(info, base, tokens, args.threads)
    finally:
        await runner.cleanup()
    delivered = sum(len(v) for v in fake.delivered.values())
    print(f"push sends to a local FCM v1 server ({args.latency_ms:.0f} ms simulated round trip), {n} messages each "
          "(2-core machine, shared: figures are noisy)")
    print(f"  pyfcm notify() one by one : {n / baseline:8.0f} msg/s  ({baseline:.2f} s)")
    print(f"  Foyer FcmAdapter ({args.threads:2d} thr) : {n / foyer:8.0f} msg/s  ({foyer:.2f} s)")
    print(f"  ratio                     : {baseline / foyer:8.1f}x")
    print(f"  delivered to the server   : {delivered} (expected {2 * n}); OAuth token requests: {fake.token_requests}")


def _baseline(info: dict, base: str, tokens: list[str]) -> float:
    from pyfcm import FCMNotification

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(info, fh)
    fcm = FCMNotification(service_account_file=fh.name, project_id=PROJECT)
    fcm.FCM_END_POINT_BASE = f"{base}/v1/projects"
    started = time.perf_counter()
    for t in tokens:
        fcm.notify(fcm_token=t, notification_title="Starting soon", notification_body="Keynote in Hall A")
    return time.perf_counter() - started


async def _foyer(info: dict, base: str, tokens: list[str], threads: int) -> float:
    adapter = FcmAdapter(credentials_info=info, endpoint=f"{base}/v1/projects", threads=threads)
    messages = [PushMessage(token=t, title="Starting soon", body="Keynote in Hall A") for t in tokens]
    started = time.perf_counter()
    results = []
    for i in range(0, len(messages), 200):  # the worker's batch size
        results += await adapter.send_many(messages[i:i + 200])
    elapsed = time.perf_counter() - started
    adapter.close()
    assert all(r.outcome is Outcome.SENT for r in results), "some sends failed"
    return elapsed


if __name__ == "__main__":
    asyncio.run(main())
