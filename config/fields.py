"""Building blocks for settings dataclasses: documented fields, secrets, the error type."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any


class SettingsError(ValueError):
    """A setting has a bad value; the message names the setting."""


class Secret(str):
    """A string that never shows its value in repr/logs (`str()` still returns it for use)."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


def setting(default: Any = dataclasses.MISSING, *, help: str, secret: bool = False, **kw: Any) -> Any:
    """Declare a settings field with its documentation."""
    metadata = {"help": help, "secret": secret}
    if default is dataclasses.MISSING and "default_factory" not in kw:
        return field(metadata=metadata, **kw)
    if "default_factory" in kw:
        return field(metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)
