"""The accounts commands of run.py as real processes: `rotate-keys` (every encrypted column,
old key -> new key, idempotent, old key removable) and `admin grant|revoke` (audit-logged)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

import pyotp
from cryptography.fernet import Fernet, InvalidToken

from domain.crypto import FieldCipher
from domain.keyrotation import rotate_all
from handlers.api import CORE
from tests.conftest import ROOT, TEST_ENCRYPTION_KEY, TEST_JWT_SECRET
from tests.support.api import Api

OLD_KEY = TEST_ENCRYPTION_KEY


async def run_cli(settings, *args: str, keys: str = OLD_KEY) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOYER_")}
    env.update(FOYER_DATABASE_URL=settings.database_url, FOYER_REDIS_URL=settings.redis_url,
               FOYER_REDIS_PREFIX=settings.redis_prefix, FOYER_JWT_SECRET=TEST_JWT_SECRET,
               FOYER_ENCRYPTION_KEYS=keys, FOYER_DATA_DIR=str(settings.data_dir), FOYER_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "run.py"), *args, cwd=str(ROOT), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode()


async def test_rotate_keys_moves_every_encrypted_column_to_the_new_key(app_factory, settings_factory, http):
    settings = settings_factory(totp_valid_window=3)
    server = await app_factory(settings)
    api, db = Api(str(server.make_url("/")), http), server.app[CORE].db
    mfa = await api.register_2fa()
    phone_users = []
    for phone in ("+4930111111", "+4930222222", "+4930333333"):
        user = await api.register()
        phone_users.append(user)
        assert (await api.patch("/api/me", user=user, json={"phone": phone}))[0] == 200
    # another area's encrypted column is found by convention and rotated too
    await db.execute("CREATE TABLE acct_test_other (id bigint PRIMARY KEY, token_enc bytea)")
    old = FieldCipher(OLD_KEY)
    await db.execute("INSERT INTO acct_test_other VALUES (1, $1), (2, NULL)", old.encrypt("push-token-1"))

    new_key = Fernet.generate_key().decode()
    rc, out = await run_cli(settings, "rotate-keys", "--check", keys=f"{new_key},{OLD_KEY}")
    assert rc == 1, out
    assert "users.phone_enc: 3 values, 0 already current, 0 rotated, 3 not current" in out

    rc, out = await run_cli(settings, "rotate-keys", "--batch-size", "2", keys=f"{new_key},{OLD_KEY}")
    assert rc == 0, out
    assert "users.phone_enc: 3 values, 0 already current, 3 rotated" in out
    assert "users.totp_secret_enc: 1 values, 0 already current, 1 rotated" in out
    assert "acct_test_other.token_enc: 1 values, 0 already current, 1 rotated" in out

    raw = [bytes(r["v"]) for r in await db.fetch(
        "SELECT phone_enc AS v FROM users WHERE phone_enc IS NOT NULL UNION ALL "
        "SELECT totp_secret_enc FROM users WHERE totp_secret_enc IS NOT NULL UNION ALL "
        "SELECT token_enc FROM acct_test_other WHERE token_enc IS NOT NULL")]
    assert len(raw) == 5
    for value in raw:
        Fernet(new_key.encode()).decrypt(value)
        try:
            Fernet(OLD_KEY.encode()).decrypt(value)
            raise AssertionError("still readable with the old key")
        except InvalidToken:
            pass

    # idempotent: a second run rewrites nothing
    again = await rotate_all(db, FieldCipher(f"{new_key},{OLD_KEY}"), batch_size=2)
    assert again.ok and sum(c.rotated for c in again.columns) == 0 and sum(c.current for c in again.columns) == 5

    # the old key removed: a node with only the new key decrypts everything
    server2 = await app_factory(settings_factory(encryption_keys=new_key, totp_valid_window=3))
    api2 = Api(str(server2.make_url("/")), http)
    code = pyotp.TOTP(mfa.totp_secret).at(int(time.time()) + 30)
    status, body = await api2.login(mfa, totp_code=code)
    assert status == 200, body
    phones = [(await api2.get("/api/me", user=u))[1]["phone"] for u in phone_users]
    assert phones == ["+4930111111", "+4930222222", "+4930333333"]

    # a key set that cannot read the data is reported, nothing is touched, and the run fails
    stranger = await rotate_all(db, FieldCipher(Fernet.generate_key().decode()), check_only=True)
    assert not stranger.ok and sum(c.undecryptable for c in stranger.columns) == 5


async def test_rotate_keys_reports_tables_it_cannot_batch(server, db):
    await db.execute("CREATE TABLE acct_test_nopk (secret_enc bytea)")
    report = await rotate_all(db, FieldCipher(OLD_KEY))
    assert report.unrotatable == ["acct_test_nopk.secret_enc"] and not report.ok


async def test_admin_grant_and_revoke_from_the_cli(api, db, settings):
    user = await api.register()
    rc, out = await run_cli(settings, "admin", "grant", user.email)
    assert rc == 0 and "role user -> admin" in out, out
    assert await db.fetchval("SELECT role FROM users WHERE id = $1", uuid.UUID(user.id)) == "admin"
    # the next refresh carries the new role
    status, tokens = await api.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert status == 200
    user.access_token, user.refresh_token = tokens["access_token"], tokens["refresh_token"]
    assert (await api.get("/api/me", user=user))[1]["role"] == "admin"

    rc, out = await run_cli(settings, "admin", "revoke", user.email.upper())
    assert rc == 0 and "role admin -> user" in out, out
    assert await db.fetchval("SELECT role FROM users WHERE id = $1", uuid.UUID(user.id)) == "user"
    status, _ = await api.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert status == 401  # signed out everywhere
    # ...at once: the CLI announced the sessions over Redis, so the node refuses the access token
    # it issued before the revoke instead of honouring its admin claim until it expires
    assert "session(s) were signed out on every node" in out, out
    for _ in range(100):
        status, body = await api.get("/api/me", user=user)
        if status == 401:
            break
        await asyncio.sleep(0.02)
    assert status == 401 and body["error"]["code"] == "invalid_token", body

    audit = await db.fetch("SELECT actor, action, details FROM security_audit WHERE user_id = $1 ORDER BY id",
                           uuid.UUID(user.id))
    assert [a["action"] for a in audit] == ["admin.granted", "admin.revoked"]
    assert all(a["actor"].startswith("cli:") for a in audit)
    assert audit[0]["details"] == {"email": user.email, "previous_role": "user"}

    rc, out = await run_cli(settings, "admin", "grant", "nobody-" + user.email)
    assert rc == 1 and "no account" in out
