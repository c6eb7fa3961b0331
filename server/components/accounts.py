"""Wiring of accounts: password hasher, field cipher, the account service and its routes."""

from __future__ import annotations

from aiohttp import web

from domain.accounts import AccountService
from domain.crypto import FieldCipher
from domain.passwords import Passwords
from domain.services import Core
from handlers import auth
from server.components import Component

CIPHER: web.AppKey[FieldCipher] = web.AppKey("foyer.cipher", FieldCipher)


def setup(app: web.Application, core: Core) -> None:
    s = core.settings.auth
    passwords = Passwords(time_cost=s.argon2_time_cost, memory_kib=s.argon2_memory_kib,
                          parallelism=s.argon2_parallelism)
    cipher = FieldCipher(str(s.encryption_keys))
    app[CIPHER] = cipher
    app[auth.ACCOUNTS] = AccountService(core, passwords=passwords, cipher=cipher)


COMPONENT = Component(name="accounts", routers=(auth.router,), setup=setup)
