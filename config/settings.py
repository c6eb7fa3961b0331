"""One frozen, typed `Settings`, built from `FOYER_*` environment variables and an optional TOML file.

Precedence (highest first): explicit overrides passed to `load_settings`, environment variables,
the TOML file named by `FOYER_CONFIG` (or the `config_file` argument), the defaults below.

Every field has a `help` text; the README's configuration table is generated from it
(`python run.py settings --markdown`). A bad value stops start-up with a `SettingsError` naming
the setting, e.g. ``FOYER_PORT: expected an integer, got 'eighty'``.

Settings are grouped: core fields live on `Settings`; each capability keeps its tunables in a
section dataclass (`Settings.auth`, `Settings.tickets`, `Settings.live`, `Settings.reach`, `Settings.notify`).
Environment variables are flat (`FOYER_<FIELD>`, field names are unique across sections); in
TOML a field may be written at top level or inside its section table (``[tickets]``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.fields import Secret, SettingsError, setting
from config.sections import AuthSettings, LiveSettings, NotifySettings, ReachSettings, TicketSettings

__all__ = ["Secret", "Settings", "SettingsError", "load_settings", "setting"]

ENV_PREFIX = "FOYER_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Process-wide configuration. Immutable once built; pass it explicitly, never read env elsewhere."""

    # --- serving -------------------------------------------------------------------------------
    host: str = setting("127.0.0.1", help="Interface to listen on. Safe default: loopback only.")
    port: int = setting(8080, help="TCP port to listen on.")
    public_url: str = setting(
        "", help="External base URL (https://foyer.example.org) used in links, share pages and calendar feeds. "
        "Defaults to http://HOST:PORT."
    )
    data_dir: Path = setting(
        Path("var"), help="Where the embedded PostgreSQL/Valkey data and generated keys live."
    )
    node_id: str = setting(
        "", help="Name of this node in logs, metrics and the admin view. Defaults to hostname:port."
    )
    log_level: str = setting("INFO", help="Python log level (DEBUG, INFO, WARNING, ERROR).")
    log_json: bool = setting(False, help="Emit one JSON object per log line (for log shippers).")
    tls_cert: Path | None = setting(None, help="PEM certificate; with tls_key, serve HTTPS/WSS directly.")
    tls_key: Path | None = setting(None, help="PEM private key for tls_cert.")
    reuse_port: bool = setting(
        False, help="Bind with SO_REUSEPORT so several node processes can share one port."
    )
    trusted_proxies: tuple[str, ...] = setting(
        (), help="Comma-separated IPs/CIDRs whose X-Forwarded-For/-Proto headers are trusted. Empty: trust none."
    )
    cors_origins: tuple[str, ...] = setting(
        (), help="Comma-separated origins allowed by CORS (HTTP and Socket.IO). Empty: same-origin only."
    )
    max_body_bytes: int = setting(
        1_048_576, help="Largest accepted HTTP request body (OWASP API4: bound resource consumption)."
    )
    shutdown_grace_seconds: float = setting(
        10.0, help="How long a stopping node lets in-flight requests finish before closing."
    )
    event_loop: str = setting(
        "fair", help="Event loop of `serve` and `worker`: `fair` (standard loop, at most loop_max_events ready "
        "sockets per pass, so a mass disconnect never stalls it) or `uvloop` (all ready sockets per pass)."
    )
    loop_max_events: int = setting(
        64, help="With event_loop=fair: ready sockets handled per pass of the loop (bounds its longest stall)."
    )

    # --- backing services ----------------------------------------------------------------------
    database_url: str | None = setting(
        None, help="PostgreSQL DSN. Unset: start an embedded PostgreSQL under data_dir.", secret=True
    )
    redis_url: str | None = setting(
        None, help="Redis/Valkey URL. Unset: start an embedded Valkey under data_dir.", secret=True
    )
    kafka_bootstrap: str | None = setting(
        None, help="Kafka bootstrap servers (host:port,...). Unset: the outbox feeds only in-process consumers."
    )
    redis_prefix: str = setting(
        "foyer:", help="Prefix of every Redis key and pub/sub channel, so several deployments can share a Redis."
    )
    db_pool_min: int = setting(2, help="Minimum PostgreSQL connections per node.")
    db_pool_max: int = setting(
        20, help="Maximum PostgreSQL connections per node. Keep nodes × this under max_connections."
    )
    db_statement_timeout_ms: int = setting(
        15_000, help="Server-side statement timeout; a stuck query fails instead of holding a connection."
    )
    db_lock_timeout_ms: int = setting(
        3_000, help="Lock wait limit inside transactions; a convoy fails fast with `busy` (pretix uses 3 s)."
    )

    # --- sections ------------------------------------------------------------------------------
    auth: AuthSettings = field(default_factory=AuthSettings, metadata={"section": True})
    tickets: TicketSettings = field(default_factory=TicketSettings, metadata={"section": True})
    live: LiveSettings = field(default_factory=LiveSettings, metadata={"section": True})
    reach: ReachSettings = field(default_factory=ReachSettings, metadata={"section": True})
    notify: NotifySettings = field(default_factory=NotifySettings, metadata={"section": True})

    # --- derived -------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        """True when at least one backing service is started by this process."""
        return self.database_url is None or self.redis_url is None

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------

SECTION_FIELDS = ("auth", "tickets", "live", "reach", "notify")


def iter_fields() -> typing.Iterator[tuple[str | None, dataclasses.Field[Any], type]]:
    """Yield (section or None, field, resolved type) for every leaf setting."""
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        if f.metadata.get("section"):
            section_cls = hints[f.name]
            section_hints = typing.get_type_hints(section_cls)
            for sf in dataclasses.fields(section_cls):
                yield f.name, sf, section_hints[sf.name]
        else:
            yield None, f, hints[f.name]


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _coerce(name: str, raw: Any, typ: Any) -> Any:
    """Turn a raw env/TOML value into `typ`, raising SettingsError that names the setting."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            return None
        return _coerce(name, raw, non_none[0])
    label = env_name(name)
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise SettingsError(f"{label}: expected true/false, got {raw!r}")
        if typ is int:
            if isinstance(raw, bool):
                raise SettingsError(f"{label}: expected an integer, got {raw!r}")
            if isinstance(raw, int):
                return raw
            try:
                return int(str(raw).strip().replace("_", ""))
            except ValueError:
                raise SettingsError(f"{label}: expected an integer, got {raw!r}") from None
        if typ is float:
            try:
                return float(raw)
            except (TypeError, ValueError):
                raise SettingsError(f"{label}: expected a number, got {raw!r}") from None
        if typ is str or typ is Secret:
            if not isinstance(raw, str):
                raise SettingsError(f"{label}: expected a string, got {raw!r}")
            return Secret(raw) if typ is Secret else raw
        if typ is Path:
            return Path(str(raw)).expanduser()
        if origin is tuple:
            items = raw if isinstance(raw, list | tuple) else [p for p in str(raw).split(",")]
            return tuple(str(i).strip() for i in items if str(i).strip())
    except SettingsError:
        raise
    raise SettingsError(f"{label}: unsupported setting type {typ!r}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"FOYER_CONFIG: file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"FOYER_CONFIG: {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTION_FIELDS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from (overrides > env > TOML > defaults) and validate them.

    Raises SettingsError naming the first bad setting. Unknown `FOYER_*` variables are errors too,
    so a typo (`FOYER_PROT`) does not silently fall back to a default.
    """
    env = dict(os.environ if env is None else env)
    overrides = dict(overrides or {})
    toml_path = config_file or (Path(env["FOYER_CONFIG"]) if env.get("FOYER_CONFIG") else None)
    toml_values = _read_toml(toml_path) if toml_path else {}

    known: dict[str, tuple[str | None, type]] = {}
    for section, f, typ in iter_fields():
        if f.name in known:  # pragma: no cover - guarded by tests
            raise SettingsError(f"duplicate setting name {f.name!r}")
        known[f.name] = (section, typ)

    non_settings = {"FOYER_CONFIG"} | {n for n in env if n.startswith("FOYER_TEST_")}
    for name in env:
        if name.startswith(ENV_PREFIX) and name not in non_settings:
            key = name[len(ENV_PREFIX):].lower()
            if key not in known and not key.endswith("_file"):
                raise SettingsError(f"{name}: unknown setting (see `python run.py settings`)")
    for key in toml_values:
        if key not in known:
            raise SettingsError(f"{toml_path}: unknown setting {key!r}")
    for key in overrides:
        if key not in known:
            raise SettingsError(f"unknown setting {key!r}")

    core: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTION_FIELDS}
    for section, f, typ in iter_fields():
        name = f.name
        if name in overrides:
            value = overrides[name]
        elif env_name(name) in env:
            value = _coerce(name, env[env_name(name)], typ)
        elif f.metadata.get("secret") and env.get(env_name(name) + "_FILE"):
            path = Path(env[env_name(name) + "_FILE"])
            try:
                value = _coerce(name, path.read_text().strip(), typ)
            except OSError as exc:
                raise SettingsError(f"{env_name(name)}_FILE: cannot read {path}: {exc.strerror}") from None
        elif name in toml_values:
            value = _coerce(name, toml_values[name], typ)
        else:
            continue
        if f.metadata.get("secret") and isinstance(value, str):
            value = Secret(value)
        (sections[section] if section else core)[name] = value

    hints = typing.get_type_hints(Settings)
    for section in SECTION_FIELDS:
        core[section] = hints[section](**sections[section])
    settings = Settings(**core)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Cross-field and range checks. Raises SettingsError naming the setting."""
    if not 0 < s.port < 65536:
        raise SettingsError(f"FOYER_PORT: must be between 1 and 65535, got {s.port}")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"FOYER_LOG_LEVEL: unknown level {s.log_level!r}")
    if s.event_loop not in ("fair", "uvloop"):
        raise SettingsError(f"FOYER_EVENT_LOOP: expected fair or uvloop, got {s.event_loop!r}")
    if not 1 <= s.loop_max_events <= 65536:
        raise SettingsError(f"FOYER_LOOP_MAX_EVENTS: must be between 1 and 65536, got {s.loop_max_events}")
    if bool(s.tls_cert) != bool(s.tls_key):
        raise SettingsError("FOYER_TLS_CERT/FOYER_TLS_KEY: give both or neither")
    for path_name in ("tls_cert", "tls_key"):
        p = getattr(s, path_name)
        if p is not None and not p.is_file():
            raise SettingsError(f"{env_name(path_name)}: file not found: {p}")
    for cidr in s.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise SettingsError(f"FOYER_TRUSTED_PROXIES: not an IP or CIDR: {cidr!r}") from None
    if s.db_pool_min < 1 or s.db_pool_max < s.db_pool_min:
        raise SettingsError("FOYER_DB_POOL_MAX: must be >= FOYER_DB_POOL_MIN >= 1")
    if s.database_url is not None and not s.database_url.startswith(("postgres://", "postgresql://")):
        raise SettingsError("FOYER_DATABASE_URL: expected a postgresql:// URL")
    if s.redis_url is not None and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("FOYER_REDIS_URL: expected a redis:// URL")
    if s.max_body_bytes < 1024:
        raise SettingsError("FOYER_MAX_BODY_BYTES: must be at least 1024")
    for section in SECTION_FIELDS:
        check = getattr(getattr(s, section), "validate", None)
        if check is not None:
            check()


def describe() -> list[dict[str, str]]:
    """Rows for documentation: env name, default, help (secrets shown as '(secret)')."""
    rows = []
    for section, f, _typ in iter_fields():
        default: Any
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = ""
        if isinstance(default, tuple):
            default = ",".join(default)
        shown = "unset" if default in (None, "") else str(default)
        rows.append(
            {
                "env": env_name(f.name),
                "section": section or "core",
                "default": shown,
                "help": f.metadata.get("help", "") + (" Also readable from `<VAR>_FILE`." if f.metadata.get("secret") else ""),
            }
        )
    return rows
