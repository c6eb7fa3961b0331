"""The core services every capability uses, gathered in one object built by `server/`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis

from config import Settings
from domain.tokens import TokenService
from storage.db import Database
from storage.redis import Keyspace
from storage.revocations import SessionRevocations


@dataclass(slots=True)
class Core:
    """Built once per node by `server.app`; passed to rooms at wiring time, to handlers via the app.

    `db` and `redis` are connected by the app's first cleanup context, before the node serves
    anything, and closed after everything else has stopped; never use them outside a request,
    a socket event or a background task started by a later cleanup context.
    """

    settings: Settings
    keys: Keyspace
    tokens: TokenService
    node_id: str
    db: Database = None  # type: ignore[assignment]
    redis: aioredis.Redis = None  # type: ignore[assignment]
    revocations: SessionRevocations | None = None  # started by the accounts component

    async def sessions_revoked(self, session_ids: Iterable[uuid.UUID | None]) -> None:
        """Call after the transaction that revoked these refresh-token families committed: their
        access tokens stop working on every node (storage/revocations.py)."""
        if self.revocations is not None:
            await self.revocations.revoke(session_ids)
