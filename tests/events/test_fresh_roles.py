"""Authorization reads the caller's current global role and account state from PostgreSQL, not the
claims frozen into an access token: revoking an admin or disabling an account takes effect at once."""

from __future__ import annotations

import uuid

from tests.events.helpers import create_event


async def _set(db, user, **fields):
    for column, value in fields.items():
        await db.execute(f"UPDATE users SET {column} = $2 WHERE id = $1", uuid.UUID(user.id), value)


async def test_revoked_admin_loses_rights_before_token_expiry(api, db):
    owner = await api.register_2fa("Owner")
    draft = await create_event(api, owner)
    admin = await api.register("Admin")
    await _set(db, admin, role="admin")
    status, _ = await api.login(admin)  # token issued while admin
    admin.access_token = _["access_token"]
    status, body = await api.get(f"/api/events/{draft['id']}", user=admin)
    assert status == 200, body
    await _set(db, admin, role="user")  # revoked; the token still claims admin
    status, body = await api.get(f"/api/events/{draft['id']}", user=admin)
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_disabled_account_is_refused_on_event_actions(api, db):
    owner = await api.register_2fa("Owner")
    draft = await create_event(api, owner)
    await _set(db, owner, disabled_at=__import__("datetime").datetime.now(__import__("datetime").UTC))
    status, body = await api.patch(f"/api/events/{draft['id']}", user=owner, json={"title": "Renamed"})
    assert status == 401 and body["error"]["code"] == "invalid_token"
