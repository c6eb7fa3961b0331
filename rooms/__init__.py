"""Live rooms: the real-time domain (chat, presence, broadcasts) and the only code that emits.

Public API for other capabilities:
- `rooms.broadcast.publish(core, room=..., event=..., data=...)` (or `stage` + `deliver` inside
  your own transaction): durable, sequenced, replayable room events to every node;
- `rooms.broadcast.publish_ephemeral(...)`: non-durable fan-out (not replayed);
- `rooms.presence.is_user_online(core, user_id)`;
- `Live.add_snapshot(name, fn)` (the `Live` object is `app[server.components.live.LIVE]`):
  contribute state to join snapshots; bind more socket events with `live.sio.on(...)` and the
  helpers in `rooms.protocol` (validation, error acks) and `rooms.chat.member_of`.
See docs/protocol.md for the wire protocol.
"""

from __future__ import annotations

from domain.services import Core
from server.realtime import FoyerServer


def setup(sio: FoyerServer, core: Core):  # -> rooms.service.Live
    from rooms import chat, membership, moderation
    from rooms.service import Live

    live = Live(core, sio)
    membership.bind(live)
    chat.bind(live)
    moderation.bind(live)
    return live
