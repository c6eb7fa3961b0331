"""The door capability's services on one node (check-in, waiting room, seating, forms, reports),
filled in by `server/components/door.py` once PostgreSQL and Redis are connected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.errors import FoyerError


@dataclass
class DoorServices:
    checkin: Any = None  # domain.checkin.scanning.CheckinService
    keys: Any = None  # domain.tickets.keys.EventKeys (shared with ticket sales)
    queue: Any = None  # domain.queue.WaitingRoom
    seating: Any = None  # domain.seating.Seating
    forms: Any = None  # domain.forms.Forms
    reports: Any = None  # storage-backed organizer views (handlers/reports.py)

    def ready(self) -> DoorServices:
        if self.checkin is None:
            raise FoyerError("unavailable", "the door services are starting, try again")
        return self
