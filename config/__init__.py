"""Configuration: one frozen `Settings` built from env and an optional TOML file."""

from config.fields import Secret, SettingsError
from config.settings import Settings, load_settings

__all__ = ["Secret", "Settings", "SettingsError", "load_settings"]
