"""Secrets for the embedded default: generated once, kept under DATA_DIR/secrets (mode 0600).

In a cluster, secrets come from the environment (`FOYER_JWT_SECRET`, `FOYER_ENCRYPTION_KEYS`)
or from files (`FOYER_JWT_SECRET_FILE`, ...); a node refuses to generate its own then, because
nodes that disagree on keys would reject each other's tokens.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet

from config import Secret, Settings, SettingsError


def _read_or_create(path: Path, make: callable) -> str:  # type: ignore[valid-type]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        return path.read_text().strip()
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def with_generated_secrets(settings: Settings, *, allow_generate: bool) -> Settings:
    """Fill missing secrets from DATA_DIR/secrets (creating them once) when allowed."""
    auth = settings.auth
    changes = {}
    secret_dir = settings.data_dir / "secrets"
    if not auth.jwt_secret:
        if not allow_generate:
            raise SettingsError("FOYER_JWT_SECRET: required when FOYER_DATABASE_URL is set (all nodes share it)")
        changes["jwt_secret"] = Secret(_read_or_create(secret_dir / "jwt_secret", lambda: secrets.token_urlsafe(48)))
    if not auth.encryption_keys:
        if not allow_generate:
            raise SettingsError(
                "FOYER_ENCRYPTION_KEYS: required when FOYER_DATABASE_URL is set (all nodes share it)"
            )
        changes["encryption_keys"] = Secret(
            _read_or_create(secret_dir / "encryption_keys", lambda: Fernet.generate_key().decode())
        )
    if not changes:
        return settings
    import dataclasses

    return settings.replace(auth=dataclasses.replace(auth, **changes))
