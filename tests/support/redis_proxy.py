"""A loopback TCP proxy in front of Redis that can hold a worker's commit in flight.

For the zombie-worker fault: the worker's commit script call (``EVALSHA`` of
``commit.lua``) is held in the proxy, the worker is frozen until the group has
moved its partitions to another worker, and then the held call is let through:
Redis runs a commit planned against a state that has since moved on, and the
proxy reads Redis's answer to it, so the test sees the compare-and-set refuse it
on the wire, whatever the frozen worker makes of it afterwards.

For the lost reply: the held commit is let through and Redis runs it, but its
answer never reaches the worker (``release(drop_reply=True)`` closes the
worker's connection instead), so the worker cannot tell a commit that ran from
one that did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass, field

from streams.store.scripts import loaded

COMMIT_SHA = hashlib.sha1(loaded("commit.lua", cluster=False).encode()).hexdigest().encode()


@dataclass
class _Held:
    """The bytes of one connection's held commit (and anything it sent after it)."""

    upstream: asyncio.StreamWriter
    chunks: list[bytes] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    drop_reply: bool = False


class CommitHoldingProxy:
    """``127.0.0.1:port`` -> Redis; ``arm()`` makes the next commit call wait in the proxy."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.port = 0
        self.held_commit = asyncio.Event()
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._armed = False
        self._held: _Held | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def arm(self) -> None:
        """Hold the next commit call that passes (and its connection's later bytes)."""
        self._armed = True

    async def release(self, *, drop_reply: bool = False) -> None:
        """Send the held commit on to Redis; its answer lands in ``reply`` and, with
        ``drop_reply``, not at the worker: its connection is closed instead."""
        held = self._held
        assert held is not None, "no commit is held"
        held.drop_reply = drop_reply
        for chunk in held.chunks:
            held.upstream.write(chunk)
        held.released.set()  # no await since the writes: nothing can slip in between
        await held.upstream.drain()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.redis_port)
        watch: list[bool] = [False]  # this connection's next reply is the held commit's
        up = asyncio.create_task(self._upstream(client_r, server_w, watch))
        down = asyncio.create_task(self._downstream(server_r, client_w, watch))
        self._tasks.update((up, down))
        try:
            await asyncio.gather(up, down)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (client_w, server_w):
                w.close()

    async def _upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, watch: list[bool]
    ) -> None:
        held: _Held | None = None
        while chunk := await reader.read(65536):
            if held is None and self._armed and b"EVALSHA" in chunk[:64] and COMMIT_SHA in chunk:
                self._armed = False
                held = self._held = _Held(writer)
                watch[0] = True
                self.held_commit.set()
            if held is not None and not held.released.is_set():
                held.chunks.append(chunk)
                continue
            writer.write(chunk)
            await writer.drain()

    async def _downstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, watch: list[bool]
    ) -> None:
        seen = b""
        while chunk := await reader.read(65536):
            if watch[0] and not self.reply.done():
                # Kept back until the commit's whole answer is here: {1} (applied) or
                # {0, what, name} (refused).
                seen += chunk
                if not (seen.startswith(b"*1\r\n") or seen.count(b"\r\n") >= 5):
                    continue
                self.reply.set_result(seen)
                if self._held is not None and self._held.drop_reply:
                    writer.close()  # the answer is lost with the connection
                    return
                chunk = seen
            writer.write(chunk)
            await writer.drain()
