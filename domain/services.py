"""The core services every capability uses, gathered in one object built by `server/`."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from config import Settings
from domain.tokens import TokenService
from storage.db import Database
from storage.redis import Keyspace


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
