"""The per-capability settings sections, gathered for `config.settings`."""

from config.auth import AuthSettings
from config.live import LiveSettings
from config.notify import NotifySettings
from config.reach import ReachSettings
from config.tickets import TicketSettings

__all__ = ["AuthSettings", "LiveSettings", "NotifySettings", "ReachSettings", "TicketSettings"]
