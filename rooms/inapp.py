"""In-app notifications through live rooms: implements domain.notify.dispatch.InAppChannel.

    Notifier(core, worker, in_app=LiveInApp(core))

- `online_users(ids)`: the users with a live Socket.IO connection on any node (one pipelined
  Redis round trip; presence is refreshed every few seconds, see rooms/presence.py).
- `send(user_id, payload)`: a durable `notification` room event in `user:{user_id}` (the user's
  private room), replayed to them after a reconnect like every room event; `payload["id"]` (the
  notification key) is the dedupe key, so a redelivered notification is not emitted twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from domain.services import Core
from rooms.broadcast import publish
from rooms.presence import online_users


class LiveInApp:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def online_users(self, user_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return await online_users(self.core, list(user_ids))

    async def send(self, user_id: uuid.UUID, payload: dict[str, Any]) -> None:
        data = {k: v for k, v in payload.items() if k not in ("room", "seq")}
        key = str(payload.get("id")) if payload.get("id") is not None else None
        await publish(self.core, room=f"user:{user_id}", event="notification", data=data, dedupe_key=key)
