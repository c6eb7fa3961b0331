"""Admin endpoints: authorization, system health, user support (audited), support requests."""

from __future__ import annotations

import uuid

import pyotp
import pytest

from tests.reach.conftest import wait_until
from tests.support.api import User


@pytest.fixture
def settings(settings_factory):
    return settings_factory(argon2_time_cost=1, argon2_memory_kib=8192, node_heartbeat_seconds=0.5)


async def make_admin(api, db) -> User:
    admin = await api.register("Admin")
    await db.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(admin.id))
    status, tokens = await api.login(admin)
    assert status == 200, tokens
    admin.access_token, admin.refresh_token = tokens["access_token"], tokens["refresh_token"]
    return admin


ADMIN_ROUTES = [("GET", "/api/admin/health"), ("GET", "/api/admin/relay"), ("GET", "/api/admin/users?q=a"),
                ("GET", "/api/admin/support"), ("GET", f"/api/admin/users/{uuid.uuid4()}"),
                ("POST", f"/api/admin/users/{uuid.uuid4()}/disable"),
                ("POST", f"/api/admin/users/{uuid.uuid4()}/reset-2fa"),
                ("POST", f"/api/admin/support/{uuid.uuid4()}/close")]


async def test_admin_routes_are_for_admins_only(api, db):
    user = await api.register("Plain")
    for method, path in ADMIN_ROUTES:
        body = {"reason": "x"} if method == "POST" and "close" not in path else ({} if method == "POST" else None)
        status, out = await api.request(method, path, user=user, json=body)
        assert (status, out["error"]["code"]) == (403, "forbidden"), (path, out)
        status, out = await api.request(method, path, json=body)
        assert (status, out["error"]["code"]) == (401, "unauthorized"), (path, out)


async def test_health_reports_nodes_services_and_outbox(api, db, server):
    admin = await make_admin(api, db)
    from handlers.api import CORE

    node_id = server.app[CORE].node_id

    async def node_listed():
        status, body = await api.get("/api/admin/health", user=admin)
        assert status == 200, body
        return body if any(n["node_id"] == node_id for n in body["nodes"]) else None

    body = await wait_until(node_listed, timeout=5)
    assert body["postgres"]["ok"] and body["redis"]["ok"]
    assert body["kafka"] == {"configured": False}
    assert {"pending", "oldest_pending_seconds", "dead_letters"} <= set(body["outbox"])
    assert {s["name"] for s in body["streams"]} >= {"analytics.sales", "analytics.live"}
    me = next(n for n in body["nodes"] if n["node_id"] == node_id)
    assert me["kind"] == "serve" and me["relay"] is True
    status, relay = await api.get("/api/admin/relay", user=admin)
    assert status == 200 and relay["dead_letters"] == []


async def test_disable_enable_and_reset_2fa_are_audited(api, db):
    admin = await make_admin(api, db)
    target = await api.register_2fa("Target Person")
    status, found = await api.get("/api/admin/users", user=admin, params={"q": "target person"})
    assert status == 200 and [u["id"] for u in found["users"]] == [target.id]
    status, found = await api.get("/api/admin/users", user=admin, params={"q": target.email.upper()})
    assert found["users"][0]["id"] == target.id and found["users"][0]["totp_enabled"] is True

    status, view = await api.post(f"/api/admin/users/{target.id}/disable", user=admin, json={"reason": "abuse"})
    assert status == 200 and view["disabled_at"] is not None
    status, out = await api.login(target, totp_code=pyotp.TOTP(target.totp_secret).now())
    assert (status, out["error"]["code"]) == (403, "account_disabled")
    status, out = await api.post("/api/auth/refresh", json={"refresh_token": target.refresh_token})
    assert (status, out["error"]["code"]) == (401, "invalid_token")
    status, out = await api.post(f"/api/admin/users/{admin.id}/disable", user=admin, json={"reason": "oops"})
    assert (status, out["error"]["code"]) == (409, "invalid_state")

    status, view = await api.post(f"/api/admin/users/{target.id}/enable", user=admin, json={"reason": "appeal"})
    assert status == 200 and view["disabled_at"] is None
    status, view = await api.post(f"/api/admin/users/{target.id}/reset-2fa", user=admin,
                                  json={"reason": "lost phone, identity checked"})
    assert status == 200 and view["totp_enabled"] is False
    status, tokens = await api.login(target)  # password alone is enough now
    assert status == 200, tokens
    status, out = await api.post(f"/api/admin/users/{target.id}/reset-2fa", user=admin, json={"reason": "again"})
    assert (status, out["error"]["code"]) == (409, "invalid_state")

    status, detail = await api.get(f"/api/admin/users/{target.id}", user=admin)
    assert status == 200
    actions = [(a["action"], a["actor"], a["details"].get("reason")) for a in detail["audit"]]
    actor = f"admin:{admin.id}"
    assert ("admin.account_disabled", actor, "abuse") in actions
    assert ("admin.account_enabled", actor, "appeal") in actions
    assert ("admin.2fa_reset", actor, "lost phone, identity checked") in actions
    facts = await db.fetch("SELECT data FROM outbox WHERE type = 'account.security_changed' AND key = $1", target.id)
    assert {f["data"]["change"] for f in facts} >= {"admin.account_disabled", "admin.2fa_reset"}
    status, out = await api.get(f"/api/admin/users/{uuid.uuid4()}", user=admin)
    assert status == 404


async def test_support_requests_from_users_to_admins(api, db):
    admin = await make_admin(api, db)
    user = await api.register("Needs Help")
    status, created = await api.post("/api/support", user=user,
                                     json={"subject": "Cannot find my ticket", "body": "Help please", "kind": "support"})
    assert status == 201 and created["status"] == "open"
    status, out = await api.post("/api/support", user=user, json={"subject": "x", "body": "y", "role": "admin"})
    assert (status, out["error"]["code"]) == (422, "validation_failed")
    status, out = await api.post("/api/support", json={"subject": "x", "body": "y"})
    assert status == 401
    status, mine = await api.get("/api/me/support", user=user)
    assert [r["id"] for r in mine["requests"]] == [created["id"]]

    status, listing = await api.get("/api/admin/support", user=admin)
    assert status == 200 and [r["id"] for r in listing["requests"]] == [created["id"]]
    assert listing["requests"][0]["user_email"] == user.email
    status, closed = await api.post(f"/api/admin/support/{created['id']}/close", user=admin, json={"note": "found it"})
    assert status == 200 and closed["status"] == "closed" and closed["close_note"] == "found it"
    status, again = await api.post(f"/api/admin/support/{created['id']}/close", user=admin, json={"note": "other"})
    assert status == 200 and again["close_note"] == "found it" and again["closed_at"] == closed["closed_at"]
    status, listing = await api.get("/api/admin/support", user=admin)
    assert listing["requests"] == []
    status, listing = await api.get("/api/admin/support", user=admin, params={"status": "all"})
    assert len(listing["requests"]) == 1
    types = [r["type"] for r in await db.fetch("SELECT type FROM outbox WHERE type LIKE 'support.%' ORDER BY seq")]
    assert types == ["support.request_submitted", "support.request_closed"]
