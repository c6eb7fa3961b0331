"""Health, readiness, metrics, OpenAPI coverage, error shape and HTTP conventions."""

from __future__ import annotations


async def test_healthz_and_readyz(api):
    status, body = await api.get("/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, body = await api.get("/readyz")
    assert status == 200
    assert body["checks"]["postgres"] == "ok" and body["checks"]["redis"] == "ok"


async def test_unknown_route_is_json_error(api):
    status, body = await api.get("/api/nope")
    assert status == 404
    assert body == {"error": {"code": "not_found", "message": "no such route"}}


async def test_security_headers_and_request_id(api, http, server):
    async with http.get(server.make_url("/healthz"), headers={"X-Request-Id": "abc-123"}) as resp:
        assert resp.headers["X-Request-Id"] == "abc-123"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
    async with http.get(server.make_url("/healthz"), headers={"X-Request-Id": "bad id with spaces"}) as resp:
        assert resp.headers["X-Request-Id"] != "bad id with spaces"


async def test_metrics_are_prometheus_text(api):
    await api.get("/healthz")
    status, text = await api.get("/metrics")
    assert status == 200
    assert 'foyer_http_requests_total{method="GET",route="/healthz",status="200"}' in text


async def test_openapi_covers_every_route(api, server):
    status, doc = await api.get("/api/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for route in server.app.router.routes():
        info = route.resource.canonical if route.resource else None
        if not info or route.method in ("HEAD", "*", "OPTIONS") or info.startswith("/socket.io"):
            continue
        served.add((info, route.method))
    assert served <= documented, served - documented
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["summary"], path
            assert op["responses"], path


async def test_malformed_json_is_validation_error(api):
    status, body = await api.post("/api/auth/register", data=b"{not json", headers={"Content-Type": "application/json"})
    assert status == 422
    assert body["error"]["code"] == "validation_failed"
    assert body["error"]["details"] == [{"field": "body", "message": "malformed JSON"}]


async def test_body_too_large(api, settings_factory, app_factory, http):
    from tests.support.api import Api

    small = await app_factory(settings_factory(max_body_bytes=2048))
    client = Api(str(small.make_url("/")), http)
    status, body = await client.post("/api/auth/register", data=b"x" * 5000,
                                     headers={"Content-Type": "application/json"})
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


async def test_cors_preflight(settings_factory, app_factory, http):
    srv = await app_factory(settings_factory(cors_origins=("https://app.example.org",)))
    headers = {"Origin": "https://app.example.org", "Access-Control-Request-Method": "POST"}
    async with http.options(srv.make_url("/api/auth/login"), headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
    headers["Origin"] = "https://evil.example.com"
    async with http.options(srv.make_url("/api/auth/login"), headers=headers) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
