"""Audience engagement in live rooms — Q&A, polls, networking — wired onto the `Live` object.

`bind(live)` registers the socket events of rooms/qa.py, rooms/polls.py and
rooms/networking.py, their join-snapshot contributors and their coalesced broadcasters, and
returns the `Engagement` (start/stop its background sweeper from the component's lifespan).

Shared rules:
- attendee actions (ask, upvote, vote) need membership of the room (authorized at join by
  domain/policy.py, like chat) and are rate-limited per user across nodes; moderators are
  exempt from rate limits;
- moderation and poll management are authorized against PostgreSQL at the time of the action
  (`authorize_action`), so a revoked moderator loses the right at once, not at the next join.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from domain.errors import FoyerError
from domain.policy import Action, authorize
from rooms.chat import banned_words_pattern
from rooms.coalesce import Coalescer
from rooms.local import Conn, Member
from rooms.membership import rate_limited_ms
from storage.live_limits import LiveLimits

if TYPE_CHECKING:
    from rooms.service import Live


class Engagement:
    def __init__(self, live: Live) -> None:
        self.live = live
        self.core = live.core
        self.settings = live.core.settings.live
        self.coalescer = Coalescer(live.core, live.spawn)
        self.banned: re.Pattern[str] | None = banned_words_pattern(self.settings.live_banned_words)
        self._limits: LiveLimits | None = None

    @property
    def limits(self) -> LiveLimits:
        if self._limits is None:  # core.redis exists only once the node has started
            self._limits = LiveLimits(self.core.redis, self.core.keys)
        return self._limits

    async def rate(self, member: Member | None, user_id: uuid.UUID, bucket: str, *, limit: int,
                   window: float) -> None:
        """Raise `rate_limited` (details.retry_after[_ms]) when the user is over `limit` per `window`
        in `bucket`, across all nodes. Moderators of the room are exempt."""
        if member is not None and member.can_moderate:
            return
        wait = await self.limits.hit(bucket, str(user_id), limit=limit, window=window)
        if wait:
            raise rate_limited_ms(wait)

    async def start(self) -> None:
        self.coalescer.start()

    async def stop(self) -> None:
        await self.coalescer.stop()


async def authorize_action(tx: Any, conn: Conn, action: Action, event_id: uuid.UUID, *, subject: str = "room") -> None:
    """The policy decision for a moderation/management action, read from PostgreSQL now."""
    await authorize(tx, conn.principal, action, event_id, subject=subject)


def require(cond: bool, code: str, message: str) -> None:
    if not cond:
        raise FoyerError(code, message)


def bind(live: Live) -> Engagement:
    from rooms import networking, polls, qa

    eng = Engagement(live)
    qa.bind(live, eng)
    polls.bind(live, eng)
    networking.bind(live, eng)
    return eng
