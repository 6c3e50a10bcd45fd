"""The stream loop (``routes_stream._pump``) against stand-ins, without processes.

Proves: a stream whose handler is cancelled while it waits for the next
notice (aiohttp cancels the handler when the client leaves) leaves no task
waiting on its subscriber's flag. Such a task used to outlive the stream
until the garbage collector destroyed it, logging "Task was destroyed but it
is pending!" at ERROR for every client that left.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from streams.gateway.fanout import Subscriber
from streams.gateway.routes import stream as routes_stream
from streams.gateway.sse import Cursor


class _Response:
    """What ``_pump`` uses of an ``EventSourceResponse``; the client never leaves by itself."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self._gone = asyncio.Event()

    async def wait(self) -> None:
        await self._gone.wait()

    async def write(self, data: bytes) -> None:
        self.written.append(data)

    async def send(self, data: str, id: str | None = None, event: str | None = None) -> None:
        raise AssertionError("nothing to send: the session does not exist")


class _NoSession:
    """Reads of a session that does not exist (yet): the stream sends nothing and waits."""

    async def state(self, sub: Subscriber, need: int) -> routes_stream._State:
        return routes_stream._State(None)


async def test_a_stream_cancelled_while_waiting_leaves_no_task_on_its_flag() -> None:
    sub = Subscriber("c-1")
    resp = _Response()
    pump = asyncio.create_task(
        routes_stream._pump(cast(Any, resp), cast(Any, _NoSession()), sub, Cursor())
    )
    for _ in range(100):  # until it sent the retry field and waits on the flag
        await asyncio.sleep(0)
        if len(sub.dirty._waiters) == 1:
            break
    assert resp.written, "the stream started"
    assert len(sub.dirty._waiters) == 1, "the stream waits for a notice"

    pump.cancel()  # the client left
    with pytest.raises(asyncio.CancelledError):
        await pump
    await asyncio.sleep(0)  # cancelled tasks run their cancellation
    assert len(sub.dirty._waiters) == 0, "a task still waits on the flag of a finished stream"
