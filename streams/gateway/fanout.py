"""One Redis pub/sub connection per gateway process, fanned out to the local streams.

The worker publishes a notice on ``P:u:{key}`` after every committed version
(``streams/store/lua/commit.lua``). Here, every session followed by at least one
local client is SUBSCRIBEd once on a shared connection, reference-counted
across clients (not a PSUBSCRIBE of everything: a gateway only receives the
notices of sessions someone on it is watching).

A notice carries no state: it only marks each subscriber of that key
*dirty* (an ``asyncio.Event``), and the subscriber re-reads the session from
Redis. A subscriber holds a flag, not a queue, so a slow client costs the
same memory as a fast one and always catches up to the newest state.

Ordering guarantee: ``subscribe`` returns only after Redis confirmed the
SUBSCRIBE, so a client that reads the state afterwards misses no later
version. Pub/sub is at-most-once: notices published while the connection is
down are lost, so after a reconnect (and its re-SUBSCRIBE confirmations)
every local subscriber is marked dirty and re-reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.gateway import metrics

log = logging.getLogger(__name__)

_LOST = (RedisConnectionError, RedisTimeoutError, OSError)


class FanoutUnavailable(Exception):
    """The shared pub/sub connection is down; a stream cannot start safely."""


@dataclass(eq=False)
class Subscriber:
    """One local follower of a session key."""

    key: str
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    merged_into: str | None = None
    closing: bool = False


@dataclass(eq=False)
class _Channel:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    subscribers: set[Subscriber] = field(default_factory=set)
    live: bool = False
    retired: bool = False


class Fanout:
    """The shared subscription. ``start`` it once, ``subscribe`` per client, ``stop`` at exit."""

    def __init__(
        self,
        client: Redis,
        channel_of: Callable[[str], str],
        *,
        ack_timeout: float = 5.0,
        liveness: float = 5.0,
        min_backoff: float = 0.05,
        max_backoff: float = 2.0,
    ) -> None:
        # ``client`` must not retry on its own: a silent reconnect would lose
        # notices without anyone re-reading.
        self._client = client
        self._channel_of = channel_of
        self._ack_timeout = ack_timeout
        self._liveness = liveness
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._channels: dict[str, _Channel] = {}
        self._acks: dict[tuple[str, str], deque[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def up(self) -> bool:
        """True while subscribed and reading."""
        return self._up.is_set()

    async def start(self) -> None:
        """Connect in the background (reconnecting for as long as it runs)."""
        self._task = asyncio.create_task(self._run(), name="pubsub-fanout")

    async def stop(self) -> None:
        """Release every stream (``closing``) and close the connection."""
        self.close_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._retiring):
            task.cancel()
        await self._client.aclose()

    def close_all(self) -> None:
        """Tell every subscriber to end (gateway shutdown: clients reconnect elsewhere)."""
        for entry in self._channels.values():
            for sub in entry.subscribers:
                sub.closing = True
                sub.dirty.set()

    @contextlib.asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[Subscriber]:
        """Follow ``key``; on entry the SUBSCRIBE is confirmed. Raises ``FanoutUnavailable``."""
        sub = Subscriber(key)
        name = self._channel_of(key)
        entry = await self._join(name, sub)
        try:
            yield sub
        finally:
            entry.subscribers.discard(sub)
            if not entry.subscribers:
                # In a task: this may run in a cancelled handler, and the
                # UNSUBSCRIBE round trip must not hold up its exit.
                task = asyncio.create_task(self._retire(name, entry))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)

    async def _join(self, name: str, sub: Subscriber) -> _Channel:
        while True:
            entry = self._channels.setdefault(name, _Channel())
            async with entry.lock:
                if entry.retired:
                    continue  # its UNSUBSCRIBE just completed: start a new entry
                if not entry.live:
                    try:
                        await self._command("subscribe", name)
                    except FanoutUnavailable:
                        if not entry.subscribers:
                            self._forget(name, entry)
                        raise
                    entry.live = True
                    metrics.PUBSUB_CHANNELS.set(len(self._channels))
                entry.subscribers.add(sub)
                return entry

    async def _retire(self, name: str, entry: _Channel) -> None:
        async with entry.lock:
            if entry.subscribers or entry.retired:
                return
            if entry.live:
                with contextlib.suppress(FanoutUnavailable):
                    await self._command("unsubscribe", name)
            self._forget(name, entry)

    def _forget(self, name: str, entry: _Channel) -> None:
        entry.retired = True
        if self._channels.get(name) is entry:
            del self._channels[name]
        metrics.PUBSUB_CHANNELS.set(len(self._channels))

    async def _command(self, kind: str, name: str) -> None:
        """SUBSCRIBE or UNSUBSCRIBE ``name`` and wait for Redis to confirm it."""
        try:
            async with asyncio.timeout(self._ack_timeout):
                await self._up.wait()
                pubsub = self._pubsub
                assert pubsub is not None
                ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._acks.setdefault((kind, name), deque()).append(ack)
                if kind == "subscribe":
                    await pubsub.subscribe(name)
                else:
                    await pubsub.unsubscribe(name)
                await ack
        except (TimeoutError, *_LOST) as exc:
            raise FanoutUnavailable(f"pub/sub {kind} failed: {exc!r}") from None

    async def _run(self) -> None:
        backoff = self._min_backoff
        first = True
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.connect()  # type: ignore[no-untyped-call]
                await self._resubscribe(pubsub)
                self._pubsub = pubsub
                self._up.set()
                metrics.PUBSUB_UP.set(1)
                if not first:
                    metrics.PUBSUB_RECONNECTS.inc()
                    self._mark_all_dirty()
                    log.info("pub/sub reconnected; %d streams re-read", self._count())
                first = False
                backoff = self._min_backoff
                await self._read(pubsub)
            except _LOST as exc:
                log.warning("pub/sub connection lost (%r); reconnecting", exc)
            except Exception:
                # Whatever broke (a refused AUTH, a protocol surprise), keep trying:
                # a dead fan-out would silently freeze every stream.
                log.exception("pub/sub connection failed; reconnecting")
            finally:
                self._up.clear()
                metrics.PUBSUB_UP.set(0)
                self._pubsub = None
                self._fail_acks()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _resubscribe(self, pubsub: PubSub) -> None:
        """Subscribe every live channel on a fresh connection and wait for every confirmation."""
        names = [n for n, e in self._channels.items() if e.live]
        if not names:
            return
        await pubsub.subscribe(*names)
        waiting = set(names)
        async with asyncio.timeout(self._ack_timeout):
            while waiting:
                msg = await pubsub.get_message(timeout=self._ack_timeout)
                if msg is None:
                    continue
                if msg["type"] == "subscribe":
                    waiting.discard(_str(msg["channel"]))
                else:
                    self._dispatch(msg)

    async def _read(self, pubsub: PubSub) -> None:
        """Dispatch messages until the connection fails; a silent connection counts as failed."""
        pinged = False
        while True:
            msg = await pubsub.get_message(timeout=self._liveness)
            if msg is None:
                if pinged:
                    raise RedisTimeoutError("pub/sub connection silent after a PING")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            self._dispatch(msg)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind in ("subscribe", "unsubscribe"):
            waiters = self._acks.get((kind, _str(msg["channel"])))
            if waiters:
                ack = waiters.popleft()
                if not waiters:
                    del self._acks[(kind, _str(msg["channel"]))]
                if not ack.done():
                    ack.set_result(None)
            return
        if kind != "message":
            return  # pong
        entry = self._channels.get(_str(msg["channel"]))
        if entry is None:
            return
        merged_into = _merged_into(msg["data"])
        for sub in entry.subscribers:
            if merged_into is not None:
                sub.merged_into = merged_into
            sub.dirty.set()

    def _mark_all_dirty(self) -> None:
        for entry in self._channels.values():
            for sub in entry.subscribers:
                sub.dirty.set()

    def _fail_acks(self) -> None:
        for waiters in self._acks.values():
            for ack in waiters:
                if not ack.done():
                    ack.set_exception(RedisConnectionError("pub/sub connection lost"))
                    # Marked as seen: its waiter may already have given up on it.
                    ack.exception()
        self._acks.clear()

    def _count(self) -> int:
        return sum(len(e.subscribers) for e in self._channels.values())


def _merged_into(data: bytes | str) -> str | None:
    """The customer of a merged-guest notice, else ``None`` (malformed notices just wake)."""
    try:
        notice = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    target = notice.get("merged_into") if isinstance(notice, dict) else None
    return target if isinstance(target, str) else None


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
