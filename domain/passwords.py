"""argon2id password hashing, always off the event loop.

Parameters come from settings (OWASP: m >= 19 MiB, t >= 2, p = 1). Hashes carry their
parameters, so raising them later still verifies old hashes and `needs_rehash` upgrades them at
the next login. `verify` of an unknown user still runs a full hash (`dummy_verify`) so response
time does not reveal whether an account exists.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2 releases the GIL; a small dedicated pool keeps hashing from starving other executor work.
_EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._dummy = self._hasher.hash("not a real password: timing equaliser")

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, self._hasher.hash, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(stored_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, check)

    async def dummy_verify(self, password: str) -> None:
        await self.verify(self._dummy, password + "x")

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
