"""A browser-like ``EventSource`` client that records what a session stream delivered.

Used by the gateway fault test and the SSE load test. Like a browser, a
``Follower`` reconnects after the stream ends or the connection fails, waits
the ``retry`` the server sent (2 s), and sends ``Last-Event-ID`` with the last
id it received. Unlike a browser it keeps every delivered state with its
arrival time, and it retries a non-200 answer too (a browser gives up for
good; the tests report every such answer).

Before each connection it reads the version Redis holds for its session, so a
test can check that the first state after a resume is the newest one (at
least that version), not the next one after ``Last-Event-ID``. Those reads go
through a gate shared by all followers (``reads``): hundreds of followers
reconnecting at once would exhaust the Redis client's connection pool (100).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from streams.store.state import RedisState
from tests.support.gateway import sse_events

RETRY_S = 2.0


@dataclass(frozen=True)
class Delivery:
    """One ``session`` event: its version (the SSE id), its data and when it arrived."""

    version: int
    data: str
    at: float  # time.monotonic()
    connection: int  # 1-based number of the connection that carried it


@dataclass
class Connection:
    """One accepted stream (HTTP 200)."""

    number: int
    opened_at: float  # time.monotonic() when the headers arrived
    sent_last: int | None  # the Last-Event-ID sent, None on a first connection
    stored: int  # the version Redis held just before connecting (0: no session)
    first: int | None = None  # the first version delivered on it, if any


@dataclass
class Follower:
    """Follows one session for as long as ``run`` runs (cancel it to stop)."""

    http: aiohttp.ClientSession
    url: str
    key: str
    state: RedisState
    reads: asyncio.Semaphore
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)  # statuses other than 200
    failures: int = 0  # connections refused or broken by the network
    unexpected: list[str] = field(default_factory=list)  # events other than ``session``
    errors: list[str] = field(default_factory=list)  # what ended ``run`` (a bug in the test)
    open: bool = False
    retry_s: float = RETRY_S

    @property
    def last(self) -> int | None:
        """The last id received (what a browser sends as ``Last-Event-ID``)."""
        return self.deliveries[-1].version if self.deliveries else None

    async def run(self) -> None:
        try:
            while True:
                await self._once()
                await asyncio.sleep(self.retry_s)
        except Exception as exc:
            self.errors.append(repr(exc))
            raise

    async def _stored(self) -> int:
        async with self.reads:
            raw = await self.state.redis.hget(self.state.session_key(self.key), "v")
        return int(raw) if raw is not None else 0

    async def _once(self) -> None:
        headers = dict(self.headers)
        sent = self.last
        if sent is not None:
            headers["Last-Event-ID"] = str(sent)
        stored = await self._stored()
        try:
            async with self.http.get(self.url, headers=headers, params=self.query) as resp:
                if resp.status != 200:
                    self.refused.append(resp.status)
                    await resp.read()
                    return
                conn = Connection(len(self.connections) + 1, time.monotonic(), sent, stored)
                self.connections.append(conn)
                self.open = True
                async for ev in sse_events(resp):
                    if ev.retry is not None:
                        self.retry_s = ev.retry / 1000
                    if ev.comment is not None or not ev.data:
                        continue
                    if ev.event != "session" or ev.id is None or not ev.id.isdigit():
                        self.unexpected.append(f"{ev.event} id={ev.id!r}")
                        continue
                    version = int(ev.id)
                    self.deliveries.append(
                        Delivery(version, ev.data, time.monotonic(), conn.number)
                    )
                    if conn.first is None:
                        conn.first = version
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            self.failures += 1
        finally:
            self.open = False


def versions(follower: Follower) -> list[int]:
    return [d.version for d in follower.deliveries]


def strictly_increasing(seq: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(seq))


async def listening(port: int, alive: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait (without blocking the loop) until something accepts on 127.0.0.1:``port``;
    fail at once if ``alive()`` says the process meant to listen has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise AssertionError(f"the process meant to listen on {port} exited")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (``nan`` when there are none)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
