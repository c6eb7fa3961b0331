"""The global admin role: granted and revoked only from the command line (`run.py admin ...`).

There is no HTTP route that makes anyone an admin (no escalation through the API, OWASP API5);
whoever can run `run.py` against the database with the deployment's settings is already trusted.

Guarantees:
- Every change is one transaction with an audit row (`security_audit`: action `admin.granted`
  or `admin.revoked`, the actor `cli:<os user>@<host>`, the previous role) and the outbox fact
  `account.security_changed`. Granting or revoking a role the account already has/lacks
  changes nothing and writes nothing.
- Revoking also revokes every refresh token of the account, so it must sign in again. With
  Redis configured, `run.py admin revoke` announces those sessions to every node
  (storage/revocations.py): their access JWTs are refused and their live connections closed at
  once. Without Redis (the embedded default, where the CLI starts no Valkey), access JWTs
  already issued keep their `admin` claim until they expire (`access_token_ttl_seconds`);
  refreshes always read the role from PostgreSQL.
"""

from __future__ import annotations

import getpass
import socket
import uuid
from dataclasses import dataclass

from domain.twofactor import record
from storage import users
from storage.db import Database


class NoSuchAccount(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class RoleChange:
    email: str
    previous: str
    current: str
    totp_enabled: bool
    revoked_sessions: tuple[uuid.UUID, ...] = ()  # signed out by the change (announce them to the nodes)

    @property
    def changed(self) -> bool:
        return self.previous != self.current


def cli_actor() -> str:
    try:
        who = getpass.getuser()
    except Exception:  # no login name (containers): still audit something meaningful
        who = "unknown"
    return f"cli:{who}@{socket.gethostname()}"


async def set_admin(db: Database, email: str, *, admin: bool, actor: str | None = None) -> RoleChange:
    role = "admin" if admin else "user"
    revoked: list[uuid.UUID] = []
    async with db.transaction("set_global_role") as conn:
        result = await users.set_role(conn, email, role)
        if result is None:
            raise NoSuchAccount(email)
        user, previous = result
        if previous != role:
            details = {"email": user.email, "previous_role": previous}
            await record(conn, user, "admin.granted" if admin else "admin.revoked", actor=actor or cli_actor(),
                         details=details)
            if not admin:
                revoked = await users.revoke_all_for_user(conn, user.id)
    return RoleChange(email=user.email, previous=previous, current=role, totp_enabled=user.totp_enabled,
                      revoked_sessions=tuple(revoked))


async def list_admins(db: Database) -> list[users.UserRow]:
    return await users.list_by_role(db.pool, "admin")
