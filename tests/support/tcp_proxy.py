"""A loopback TCP proxy whose connections a test can cut, as a network drop would."""

from __future__ import annotations

import asyncio
import contextlib


class CuttableProxy:
    """``127.0.0.1:port`` -> ``127.0.0.1:upstream``; ``cut()`` closes every open connection
    (both ends) and lets new ones through."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Close every open connection; return how many ends were closed."""
        writers = list(self._writers)
        for w in writers:
            w.transport.abort()
        self._writers.clear()
        return len(writers)

    async def close(self) -> None:
        """Stop listening and cut what is open."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_w}
        await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        self._writers -= {writer, up_w}


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    with contextlib.suppress(OSError, RuntimeError):
        dst.close()
