"""Settings of ticket sales: holds, the Redis inventory gate, payments, the waiting room."""

from __future__ import annotations

from dataclasses import dataclass

from config.fields import SettingsError, setting


@dataclass(frozen=True, slots=True)
class TicketSettings:
    hold_seconds: int = setting(600, help="How long a held order keeps its seats while the buyer pays.")

    def validate(self) -> None:
        if not 30 <= self.hold_seconds <= 86400:
            raise SettingsError("FOYER_HOLD_SECONDS: must be between 30 and 86400")
