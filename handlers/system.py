"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handlers.api import ApiRequest, Router, json_response

router = Router("system", "Health, readiness, metrics and this document.")

ReadinessCheck = Callable[[], Awaitable[None]]
# name -> check; a check raises (or times out) when its dependency is not usable.
READINESS_CHECKS: web.AppKey[dict[str, ReadinessCheck]] = web.AppKey("foyer.readiness_checks", dict)
OPENAPI_DOC: web.AppKey[dict[str, Any]] = web.AppKey("foyer.openapi", dict)
METRICS_REGISTRY: web.AppKey[Any] = web.AppKey("foyer.metrics_registry", object)

_CHECK_TIMEOUT = 2.0


@router.get("/healthz", summary="Liveness: the process answers", auth="none")
async def healthz(req: ApiRequest) -> web.Response:
    """Cheap on purpose: no I/O. Used as the speed baseline for hot paths in benchmarks."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


@router.get("/readyz", summary="Readiness: PostgreSQL, Redis and the cross-node bus are usable", auth="none",
            errors=("unavailable",))
async def readyz(req: ApiRequest) -> web.Response:
    """503 with the failing checks when any dependency is unusable, so a load balancer drains the node."""
    checks = req.app[READINESS_CHECKS]

    async def run(name: str, check: ReadinessCheck) -> tuple[str, str]:
        try:
            await asyncio.wait_for(check(), _CHECK_TIMEOUT)
            return name, "ok"
        except Exception as exc:  # any failure means not ready; the reason is reported, not raised
            return name, f"failed: {type(exc).__name__}"

    results = dict(await asyncio.gather(*(run(n, c) for n, c in checks.items())))
    ready = all(v == "ok" for v in results.values())
    body = {"status": "ready" if ready else "not_ready", "node": req.core.node_id, "checks": results}
    if not ready:
        body["error"] = {"code": "unavailable", "message": "a dependency is not usable"}
    return json_response(body, status=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics of this node", auth="none", content_type="text/plain")
async def metrics(req: ApiRequest) -> web.Response:
    data = generate_latest(req.app[METRICS_REGISTRY])
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


@router.get("/api/openapi.json", summary="This OpenAPI 3.1 document", auth="none")
async def openapi(req: ApiRequest) -> web.Response:
    return json_response(req.app[OPENAPI_DOC])
