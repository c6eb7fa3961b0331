"""Wiring of accounts: password hasher, field cipher, the account service, its routes, and the
sweeper that deletes long-expired refresh-token families."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from domain.accounts import AccountService
from domain.crypto import FieldCipher
from domain.identity import Principal
from domain.passwords import Passwords
from domain.services import Core
from handlers import auth, me
from server.components import Component
from server.realtime import NAMESPACE
from storage import users
from storage.revocations import SessionRevocations

log = logging.getLogger("foyer.accounts")

CIPHER: web.AppKey[FieldCipher] = web.AppKey("foyer.cipher", FieldCipher)

_SWEEP_EVERY_SECONDS = 3600.0
_SWEEP_GRACE_SECONDS = 86400  # keep expired families a day, for support questions


def setup(app: web.Application, core: Core) -> None:
    s = core.settings.auth
    passwords = Passwords(time_cost=s.argon2_time_cost, memory_kib=s.argon2_memory_kib,
                          parallelism=s.argon2_parallelism)
    cipher = FieldCipher(str(s.encryption_keys))
    app[CIPHER] = cipher
    app[auth.ACCOUNTS] = AccountService(core, passwords=passwords, cipher=cipher)


async def sweep_refresh_tokens(core: Core) -> int:
    """Delete refresh-token families that expired over a day ago; returns rows deleted."""
    total = 0
    while True:
        deleted = await users.delete_expired_refresh_tokens(core.db.pool, grace_seconds=_SWEEP_GRACE_SECONDS)
        total += deleted
        if deleted == 0:
            return total


async def lifespan(app: web.Application, core: Core) -> AsyncIterator[None]:
    async def loop() -> None:
        failures = 0
        while True:
            # Jittered so the nodes of a cluster do not sweep in lock-step (the sweep is idempotent).
            delay = _SWEEP_EVERY_SECONDS * random.uniform(0.5, 1.0) if failures == 0 else \
                min(300.0, 2.0 ** failures) * random.uniform(0.5, 1.0)
            await asyncio.sleep(delay)
            try:
                deleted = await sweep_refresh_tokens(core)
                failures = 0
                if deleted:
                    log.info("deleted %d expired refresh tokens", deleted)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.warning("refresh-token sweep failed (attempt %d)", failures, exc_info=True)

    task = asyncio.create_task(loop(), name="foyer.accounts.sweep")
    # Signed-out sessions: their access tokens are refused on every node (storage/revocations.py).
    revocations = SessionRevocations(core.redis, core.keys,
                                     access_ttl_seconds=core.settings.auth.access_token_ttl_seconds)
    revocations.listener.start()
    await revocations.listener.wait_subscribed(5.0)  # else it catches up when Redis is back
    core.revocations = revocations
    core.tokens.is_revoked = revocations.is_revoked
    revocations.on_revoked = app.get(SIGNED_OUT)  # close the live connections of those sessions
    try:
        yield
    finally:
        core.tokens.is_revoked = None
        core.revocations = None
        await revocations.listener.stop()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


SIGNED_OUT: web.AppKey[Callable[[list[uuid.UUID]], None]] = web.AppKey("foyer.signed_out", object)  # type: ignore[arg-type]


def socket_setup(sio: Any, core: Core, app: web.Application) -> None:
    """Live connections of a signed-out session are closed (on every node: each learns the
    revocation over Redis); their reconnect is refused like any request with that token."""
    by_session: dict[uuid.UUID, set[str]] = {}
    session_of: dict[str, uuid.UUID] = {}
    closing: set[asyncio.Task] = set()

    def connected(sid: str, principal: Principal) -> None:
        if principal.session_id is not None:
            by_session.setdefault(principal.session_id, set()).add(sid)
            session_of[sid] = principal.session_id

    def disconnected(sid: str) -> None:
        session = session_of.pop(sid, None)
        if session is not None:
            sids = by_session.get(session)
            if sids is not None:
                sids.discard(sid)
                if not sids:
                    del by_session[session]

    def signed_out(session_ids: list[uuid.UUID]) -> None:
        for session in session_ids:
            for sid in list(by_session.get(session, ())):
                task = asyncio.ensure_future(sio.disconnect(sid, namespace=NAMESPACE))
                closing.add(task)
                task.add_done_callback(closing.discard)

    sio.connect_hooks.append(connected)
    sio.disconnect_hooks.append(disconnected)
    app[SIGNED_OUT] = signed_out


COMPONENT = Component(name="accounts", routers=(auth.router, me.router), setup=setup, lifespan=lifespan,
                      socket_setup=socket_setup)
