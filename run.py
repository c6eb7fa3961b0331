#!/usr/bin/env python3
"""Foyer command line: serve a node, apply migrations, load a demo event, inspect settings.

With no FOYER_DATABASE_URL / FOYER_REDIS_URL, an embedded PostgreSQL and Valkey are started under
the data directory (./var by default) and stopped again on exit; with them set, those servers are
used and nothing is started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from config import Settings, SettingsError, load_settings

log = logging.getLogger("foyer")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Foyer: real-time engagement server for live events. "
        "Every option can also be set as a FOYER_* environment variable or in a TOML file (--config).",
        epilog="Run `python run.py settings` for the full list of settings and their environment variables.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML settings file (env: FOYER_CONFIG)")
    common.add_argument("--data-dir", type=Path, help="where embedded services and generated keys live "
                        "(env: FOYER_DATA_DIR, default ./var)")
    common.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (env: FOYER_LOG_LEVEL)")

    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", parents=[common], help="serve one node (default)",
                           description="Serve one Foyer node: HTTP API under /api, Socket.IO under /socket.io "
                           "(namespace /live). Applies pending migrations first.")
    _add_serve_options(serve)
    sub.add_parser("migrate", parents=[common], help="apply pending database migrations and exit")
    demo = sub.add_parser("demo", parents=[common], help="create a sample published event and print logins",
                          description="Create demo accounts and a published sample event with sessions, "
                          "speakers and ticket types; prints the logins. Safe to run twice.")
    demo.add_argument("--password", help="password for the demo accounts (default: generated and printed)")
    settings = sub.add_parser("settings", parents=[common], help="list every setting with its default")
    settings.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    settings.add_argument("--update-readme", action="store_true",
                          help="rewrite the configuration table in README.md from the settings definitions")
    sub.add_parser("worker", parents=[common], help="run background workers only (outbox relay), no HTTP")
    rotate = sub.add_parser(
        "rotate-keys", parents=[common], help="re-encrypt every encrypted field under the primary key",
        description="Re-encrypt every encrypted column (all `*_enc` columns) under the first key of "
        "FOYER_ENCRYPTION_KEYS, in batches, idempotently, while nodes keep serving. Exits 0 when every value "
        "is under the primary key. Procedure: docs/security.md, 'Key rotation'.")
    rotate.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")
    rotate.add_argument("--check", action="store_true",
                        help="only report; exit 1 if any value is not under the primary key yet")
    admin = sub.add_parser(
        "admin", parents=[common], help="grant or revoke the global admin role (audit-logged)",
        description="The only way to make an account an admin. `grant EMAIL` / `revoke EMAIL` change the role "
        "and write an audit row (security_audit); `revoke` also signs the account out. `list` prints the admins.")
    admin.add_argument("admin_action", choices=("grant", "revoke", "list"), metavar="{grant,revoke,list}")
    admin.add_argument("email", nargs="?", help="the account's email (grant and revoke)")
    # Serving is the default command, so its options also work without `serve`.
    _add_serve_options(parser)
    for action in common._actions:
        if action.dest != "help":
            parser._add_action(action)
    return parser


def _add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to listen on (env: FOYER_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (env: FOYER_PORT, default 8080)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS/WSS (env: FOYER_TLS_CERT)")
    p.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert (env: FOYER_TLS_KEY)")
    p.add_argument("--reuse-port", action="store_true", default=None,
                   help="SO_REUSEPORT: several nodes on one port (env: FOYER_REUSE_PORT)")


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "tls_cert", "tls_key", "reuse_port", "data_dir", "log_level"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(config_file=args.config, overrides=overrides)


def prepare(settings: Settings, *, valkey: bool = True) -> tuple[Settings, Callable[[], None]]:
    """Start embedded services when needed and fill generated secrets; return (settings, stop).

    `valkey=False` for commands that do not use Redis (migrate, demo, admin, rotate-keys): they
    may run beside a serving node, and a second Valkey on the same data directory would write
    the same append-only file (the embedded PostgreSQL is shared safely: one postmaster per
    directory)."""
    from server.embedded import start_embedded
    from server.secrets_store import with_generated_secrets

    stop: Callable[[], None] = lambda: None  # noqa: E731
    need_valkey = valkey and settings.redis_url is None
    if settings.database_url is None or need_valkey:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        services = start_embedded(settings.data_dir, postgres=settings.database_url is None, valkey=need_valkey)
        settings = settings.replace(
            database_url=settings.database_url or services.database_url,
            redis_url=settings.redis_url or services.redis_url,
        )
        stop = services.stop
        allow_generate = True
    else:
        allow_generate = False
    return with_generated_secrets(settings, allow_generate=allow_generate), stop


def _new_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """The serving loop the settings ask for (server/eventloop.py explains the choice)."""
    from server.eventloop import new_loop

    return new_loop(settings.event_loop, settings.loop_max_events)


def cmd_serve(settings: Settings, embedded: bool) -> int:
    from aiohttp import web

    from server.app import create_app

    loop = _new_loop(settings)
    ssl_context = None
    if settings.tls_cert and settings.tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    app = create_app(settings)
    scheme = "https" if ssl_context else "http"
    url = f"{scheme}://{settings.host}:{settings.port}"
    from server.eventloop import describe

    print(f"Foyer node serving on {url} (event loop: {describe(loop)})", flush=True)
    print(f"  API docs  {url}/api/openapi.json    health {url}/healthz    metrics {url}/metrics", flush=True)
    print(f"  Socket.IO {url}/socket.io/ (namespace /live)", flush=True)
    if embedded:
        print(f"  embedded PostgreSQL + Valkey under {settings.data_dir.resolve()}; "
              "`python run.py demo` loads a sample event", flush=True)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=ssl_context,
        reuse_port=settings.reuse_port or None,
        shutdown_timeout=settings.shutdown_grace_seconds,
        access_log=None,
        print=None,
        handle_signals=True,
        loop=loop,
    )
    return 0


def cmd_migrate(settings: Settings) -> int:
    from storage.migrate import migrate

    applied = asyncio.run(migrate(settings.database_url or ""))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def _settings_markdown() -> str:
    from config.settings import describe

    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    lines += [f"| `{r['env']}` | `{r['default']}` | {r['help']} |" for r in describe()]
    return "\n".join(lines)


def cmd_settings(markdown: bool, update_readme: bool = False) -> int:
    import re

    from config.settings import describe

    rows = describe()
    if update_readme:
        readme = Path(__file__).resolve().parent / "README.md"
        text = readme.read_text()
        table = "<!-- settings-table:start -->\n" + _settings_markdown() + "\n<!-- settings-table:end -->"
        readme.write_text(re.sub(r"<!-- settings-table:start -->.*<!-- settings-table:end -->",
                                 lambda _: table, text, flags=re.S))
        print(f"updated {readme}")
    elif markdown:
        print(_settings_markdown())
    else:
        for r in rows:
            print(f"{r['env']:<40} {r['default']:<24} {r['help']}")
    return 0


def cmd_demo(settings: Settings, password: str | None) -> int:
    from server.demo import run_demo

    return asyncio.run(run_demo(settings, password=password))


def cmd_worker(settings: Settings) -> int:
    from server.eventloop import loop_factory
    from server.worker import run_worker

    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop, settings.loop_max_events)) as runner:
        return runner.run(run_worker(settings))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    try:
        settings = _settings_from(args)
    except SettingsError as exc:
        print(f"foyer: configuration error: {exc}", file=sys.stderr)
        return 2
    from server.logs import configure_logging

    configure_logging(settings.log_level, json_lines=settings.log_json)
    if command == "settings":
        return cmd_settings(args.markdown, args.update_readme)
    embedded = settings.database_url is None or settings.redis_url is None
    try:
        settings, stop = prepare(settings, valkey=command in ("serve", "worker"))
    except SettingsError as exc:
        print(f"foyer: configuration error: {exc}", file=sys.stderr)
        return 2
    # SIGTERM (systemd, Kubernetes) shuts down like Ctrl-C for every command.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if command == "serve":
            return cmd_serve(settings, embedded)
        if command == "migrate":
            return cmd_migrate(settings)
        if command == "demo":
            return cmd_demo(settings, args.password)
        if command == "worker":
            return cmd_worker(settings)
        if command == "rotate-keys":
            from server.accounts_cli import rotate_keys

            return rotate_keys(settings, batch_size=args.batch_size, check=args.check)
        if command == "admin":
            from server.accounts_cli import admin

            return admin(settings, action=args.admin_action, email=args.email)
        raise AssertionError(command)
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
