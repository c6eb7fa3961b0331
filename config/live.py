"""Settings of the real-time rooms: history, replay, rate limits, presence."""

from __future__ import annotations

from dataclasses import dataclass

from config.fields import SettingsError, setting


@dataclass(frozen=True, slots=True)
class LiveSettings:
    socketio_ping_interval: float = setting(25.0, help="Engine.IO ping interval in seconds.")
    socketio_ping_timeout: float = setting(20.0, help="Engine.IO ping timeout in seconds.")
    socketio_max_payload_bytes: int = setting(
        65_536, help="Largest accepted Socket.IO packet (engine.io default is 1 MB: too generous)."
    )

    def validate(self) -> None:
        if self.socketio_max_payload_bytes < 1024:
            raise SettingsError("FOYER_SOCKETIO_MAX_PAYLOAD_BYTES: must be at least 1024")
