"""The accounts commands of `run.py`: `rotate-keys` and `admin grant|revoke|list`.

Both connect to the configured PostgreSQL (the embedded one when no URL is set) with the same
settings as the nodes, run, print a short report and return a process exit code.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from config import Settings
from domain.crypto import FieldCipher
from storage.db import Database


async def _connect(settings: Settings) -> Database:
    return await Database.connect(settings.database_url or "", min_size=1, max_size=2,
                                  statement_timeout_ms=settings.db_statement_timeout_ms,
                                  lock_timeout_ms=settings.db_lock_timeout_ms, application_name="foyer cli")


async def _announce_revoked(settings: Settings, sessions: Sequence[uuid.UUID]) -> bool:
    """Tell every node that `sessions` are signed out (storage/revocations.py), when this process
    can reach the deployment's Redis; False without one (the embedded default starts no Valkey
    for CLI commands) or when Redis refused, in which case the tokens expire on their own."""
    if not sessions:
        return True
    if settings.redis_url is None:
        return False
    from storage.redis import Keyspace, connect_redis
    from storage.revocations import SessionRevocations

    redis = connect_redis(settings.redis_url, max_connections=2)
    try:
        revocations = SessionRevocations(redis, Keyspace(settings.redis_prefix),
                                         access_ttl_seconds=settings.auth.access_token_ttl_seconds)
        return await revocations.revoke(sessions)
    finally:
        await redis.aclose()


def _run(main: Callable[[], Awaitable[int]]) -> int:
    try:
        return asyncio.run(main())
    except asyncpg.UndefinedTableError:
        print("foyer: the database has no Foyer schema yet: run `python run.py migrate` first")
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"foyer: cannot use the database: {exc}")
        return 2


def rotate_keys(settings: Settings, *, batch_size: int, check: bool) -> int:
    """Exit 0: every encrypted value is under the primary key. 1: some are not (see the report)."""
    from domain.keyrotation import rotate_all

    if batch_size < 1:
        print("foyer: --batch-size must be at least 1")
        return 2
    cipher = FieldCipher(str(settings.auth.encryption_keys))

    async def run() -> int:
        db = await _connect(settings)
        try:
            report = await rotate_all(db, cipher, batch_size=batch_size, check_only=check, progress=print)
        finally:
            await db.close()
        for name in report.unrotatable:
            print(f"{name}: cannot be rotated (its table has no single-column primary key)")
        if not report.columns and not report.unrotatable:
            print("no encrypted columns found")
        if report.ok:
            print("all encrypted values are under the primary key"
                  + (f"; the other {cipher.key_count - 1} key(s) can be removed" if cipher.key_count > 1 else ""))
            return 0
        if check:
            print("some values are not under the primary key: run `python run.py rotate-keys`")
        else:
            print("some values could not be rotated: keep every old key until this command exits 0")
        return 1

    return _run(run)


def admin(settings: Settings, *, action: str, email: str | None) -> int:
    from domain.admin import NoSuchAccount, list_admins, set_admin

    async def run() -> int:
        db = await _connect(settings)
        try:
            if action == "list":
                for user in await list_admins(db):
                    print(f"{user.email}\t{user.name}\t2fa={'on' if user.totp_enabled else 'off'}")
                return 0
            if not email:
                print(f"foyer: `admin {action}` needs an EMAIL")
                return 2
            try:
                change = await set_admin(db, email, admin=action == "grant")
            except NoSuchAccount:
                print(f"foyer: no account with email {email}")
                return 1
        finally:
            await db.close()
        if not change.changed:
            print(f"{change.email} already has the role {change.current}; nothing changed")
        else:
            print(f"{change.email}: role {change.previous} -> {change.current} (audit-logged)")
            if action == "revoke":
                if await _announce_revoked(settings, change.revoked_sessions):
                    print(f"  its {len(change.revoked_sessions)} session(s) were signed out on every node")
                else:
                    print("  its sessions were revoked; access tokens already issued expire within "
                          f"{settings.auth.access_token_ttl_seconds} s")
        if action == "grant" and not change.totp_enabled and settings.auth.require_2fa_for_staff:
            print("  note: this account has no two-factor auth yet; admin actions that need 2FA stay "
                  "refused until it enables it")
        return 0

    return _run(run)
