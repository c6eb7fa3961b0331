"""`run.py worker`: a process that runs Foyer's background work — the outbox relay and every
component's background loops — without serving HTTP.

It builds the same application as a node (so consumers and services are wired identically),
starts it without a listening socket, and stops cleanly on SIGTERM/SIGINT. The relay always
runs here, even when `FOYER_RELAY_ENABLED=false` tells serving nodes to leave it to workers.
Several workers (and nodes) may run at once: relay streams are leased to one process at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal

from aiohttp import web

from config import Settings

log = logging.getLogger("foyer.worker")


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    from server.app import create_app
    from server.components.reach import REACH

    settings = settings.replace(reach=dataclasses.replace(settings.reach, relay_enabled=True))
    app = create_app(settings)
    app[REACH].kind = "worker"
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread / Windows
            pass
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    state = app[REACH]
    streams = ", ".join(state.relay.stream_names) if state.relay else "(relay off)"
    print(f"Foyer worker {state.node_id} running: relay streams {streams}", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("worker stopping")
        await runner.cleanup()
    return 0
