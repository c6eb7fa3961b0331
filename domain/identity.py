"""Who is asking: the authenticated principal carried by every request and socket."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in user as proven by a verified access token.

    `role` is the global role (`user` or `admin`) at the time the token was issued (tokens live
    `access_token_ttl_seconds`); decisions that need fresher data (2FA state, disabled accounts)
    read PostgreSQL through `domain.policy`.
    """

    user_id: uuid.UUID
    role: str = "user"
    session_id: uuid.UUID | None = None  # the refresh-token family this access token came from

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
