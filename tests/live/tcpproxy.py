"""A TCP proxy for tests that can black-hole its connections (a half-open network path)."""

from __future__ import annotations

import asyncio


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = False
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._conns: set[asyncio.StreamWriter] = set()

    async def start(self) -> Proxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if not self.frozen:  # frozen: bytes vanish, nobody is told
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._conns.update((writer, up_writer))
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        self._conns.difference_update((writer, up_writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in list(self._conns):
            w.close()
