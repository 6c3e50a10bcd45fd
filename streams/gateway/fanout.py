"""One Redis pub/sub connection per gateway process (one per primary on a cluster), fanned
out to the local streams.

The commit script announces every committed version of a key with ``SPUBLISH``
on the sharded channel of the key's partition (``keys.updates(space, n)``,
``cont:{p3}:u``), the notice JSON naming the ``key``. Here, one connection
``SSUBSCRIBE``s every partition's channel when it connects, and each notice
is dispatched by its ``key`` to the local followers of that key (a gateway
with no follower of a key drops its notices). Following a key costs no round
trip to Redis: the partition's channel is subscribed already.

A notice raises its key's announcement count (``Followed.announced``) and
marks each follower of that key *dirty* (an ``asyncio.Event``); it also
carries the Kafka timestamp of the oldest record the commit applied to the
key (``streams/core/notice.py``; a stream times its next write from that,
``continuity_freshness_seconds``). A notice of a session write carries the
stored state it announces too, kept as the key's ``Followed.carried`` with
its announcement count: a follower woken by it sends that state without a
Redis read. Otherwise (a merge, an erasure, a reconnect, a malformed notice)
the follower re-reads the session from Redis. A follower holds a flag, not a
queue, so a slow client costs the same memory as a fast one and always
catches up to the newest state. The followers of one key share their reads
and what a carried state becomes (``Followed.shared``,
``streams/gateway/shared_read.py``): a read started once the count had
reached the one a follower woke with serves it, so one notice costs at most
one Redis read and one serialised frame however many local streams follow
the key.

Ordering guarantee: ``subscribe`` returns only while every partition channel
is confirmed subscribed, with the follower registered, so a client that reads
the state afterwards misses no later version. Pub/sub is at-most-once: notices
published while the connection is down are lost, so after a reconnect (and
its ``SSUBSCRIBE`` confirmations) every followed key's count is raised and
every local follower is marked dirty and re-reads (no read from before the
reconnect is reused).

The client is one primary's ``redis.asyncio.Redis`` or a ``RedisCluster``
(``streams/store/sharded.py``): on one primary every channel is subscribed on
one connection; on a cluster, on one connection per primary owning some of
the partitions' slots, read side by side. Each connection reads ``smessage``
replies with ``get_message``. The fan-out is up while every one of them is;
when one fails (a node lost, a failover, a slot moved away and its channel
``sunsubscribe``d), all are closed, the owners are resolved again from a
fresh slot map, and after the new ``SSUBSCRIBE`` confirmations every local
follower re-reads: the same reconnect-then-re-read rule as on one primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.core import notice
from streams.gateway import metrics
from streams.gateway.shared_read import SharedRead
from streams.store import keys, sharded
from streams.store.client import Client, transient
from streams.store.keys import Space

log = logging.getLogger(__name__)

_LOST = (RedisConnectionError, RedisTimeoutError, OSError)


class FanoutUnavailable(Exception):
    """The shared pub/sub connection is down; a stream cannot start safely."""


@dataclass(frozen=True)
class Carried:
    """A key's stored state as a notice carried it: the one its ``at``-th announcement named."""

    at: int
    stored: bytes


@dataclass(eq=False)
class Followed:
    """One key followed locally: its followers, its announcements, their shared read."""

    key: str
    followers: set[Subscriber] = field(default_factory=set)
    announced: int = 0
    """Notices (and reconnects) dispatched for the key since it was first followed."""
    shared: SharedRead[Any] = field(default_factory=SharedRead)
    """The followers' reads of the key (``routes/stream.py`` decides what they hold)."""
    carried: Carried | None = None
    """The state the newest notice that carried one carried."""


@dataclass(eq=False)
class Subscriber:
    """One local follower of a session key."""

    key: str
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    merged_into: str | None = None
    closing: bool = False
    followed: Followed | None = None
    """Its key's local record while subscribed through ``Fanout.subscribe``."""
    # The Kafka timestamp (ms) of the oldest record announced since this stream last
    # wrote: what its next write is news of (``continuity_freshness_seconds``).
    appended_ms: int | None = None

    def take_appended(self) -> int | None:
        """The oldest announced record's timestamp since the last call, and forget it."""
        taken, self.appended_ms = self.appended_ms, None
        return taken


class Fanout:
    """The shared subscription. ``start`` it once, ``subscribe`` per client, ``stop`` at exit."""

    def __init__(
        self,
        client: Client,
        space: Space,
        *,
        ack_timeout: float = 5.0,
        liveness: float = 5.0,
        min_backoff: float = 0.05,
        max_backoff: float = 2.0,
    ) -> None:
        # ``client`` must not retry on its own: a silent reconnect would lose
        # notices without anyone re-reading.
        self._client = client
        self._space = space
        # Channel name -> partition, for a notice whose key cannot be read.
        self._partitions = {keys.updates(space, n): n for n in space.all_partitions()}
        self._ack_timeout = ack_timeout
        self._liveness = liveness
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._followers: dict[str, Followed] = {}
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        """True while every partition channel is subscribed and the connection reads."""
        return self._up.is_set()

    @property
    def channels(self) -> tuple[str, ...]:
        """The sharded channels subscribed: one per partition."""
        return tuple(self._partitions)

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
        await self._client.aclose()

    def close_all(self) -> None:
        """Tell every subscriber to end (gateway shutdown: clients reconnect elsewhere)."""
        for followed in self._followers.values():
            for sub in followed.followers:
                sub.closing = True
                sub.dirty.set()

    @contextlib.asynccontextmanager
    async def subscribe(self, key: str) -> AsyncIterator[Subscriber]:
        """Follow ``key``; on entry its partition's channel is confirmed subscribed.

        Raises ``FanoutUnavailable`` when the connection is not up within the ack timeout.
        """
        try:
            async with asyncio.timeout(self._ack_timeout):
                await self._up.wait()
        except TimeoutError:
            raise FanoutUnavailable("pub/sub connection down") from None
        # No await between the check above and the registration: the connection
        # that was up then is the one that will wake this follower (or, if it
        # fails, its reconnect marks every follower dirty).
        followed = self._followers.get(key)
        if followed is None:
            followed = self._followers[key] = Followed(key)
        sub = Subscriber(key, followed=followed)
        followed.followers.add(sub)
        metrics.PUBSUB_CHANNELS.set(len(self._followers))
        try:
            yield sub
        finally:
            followed.followers.discard(sub)
            # The record (and its cached read) goes with the key's last follower.
            if not followed.followers and self._followers.get(key) is followed:
                del self._followers[key]
            metrics.PUBSUB_CHANNELS.set(len(self._followers))

    async def _run(self) -> None:
        backoff = self._min_backoff
        first = True
        while True:
            made: list[sharded.Shard] = []
            pubsubs: list[PubSub] = []
            try:
                # Resolved on every (re)connect: after a failover or a reshard the
                # partitions' slots may have other owners.
                made = await sharded.shards(self._client, self.channels)
                for shard in made:
                    pubsub = shard.client.pubsub()
                    pubsubs.append(pubsub)
                    await pubsub.connect()  # type: ignore[no-untyped-call]
                    await self._subscribe_all(pubsub, shard.channels)
                self._up.set()
                metrics.PUBSUB_UP.set(1)
                if not first:
                    metrics.PUBSUB_RECONNECTS.inc()
                    self._mark_all_dirty()
                    log.info("pub/sub reconnected; %d streams re-read", self._count())
                first = False
                backoff = self._min_backoff
                await self._read_all(pubsubs)
            except Exception as exc:
                if isinstance(exc, _LOST) or transient(exc):
                    log.warning("pub/sub connection lost (%r); reconnecting", exc)
                else:
                    # Whatever broke (a refused AUTH, a protocol surprise), keep trying:
                    # a dead fan-out would silently freeze every stream.
                    log.exception("pub/sub connection failed; reconnecting")
            finally:
                self._up.clear()
                metrics.PUBSUB_UP.set(0)
                for pubsub in pubsubs:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()
                with contextlib.suppress(RedisError, OSError):
                    await sharded.close(made)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _subscribe_all(self, pubsub: PubSub, channels: tuple[str, ...]) -> None:
        """SSUBSCRIBE ``channels`` on one connection and wait for every confirmation."""
        # One command per channel: each names one slot, as a cluster node requires.
        for name in channels:
            await pubsub.ssubscribe(name)
        waiting = set(channels)
        async with asyncio.timeout(self._ack_timeout):
            while waiting:
                msg = await pubsub.get_message(timeout=self._ack_timeout)
                if msg is None:
                    continue
                if msg["type"] == "ssubscribe":
                    waiting.discard(_str(msg["channel"]))
                else:
                    self._dispatch(msg)

    async def _read_all(self, pubsubs: list[PubSub]) -> None:
        """Read every connection side by side until one fails; raise its error."""
        if len(pubsubs) == 1:
            await self._read(pubsubs[0])
            return
        tasks = [asyncio.create_task(self._read(p)) for p in pubsubs]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        failed = next(iter(done))
        error = failed.exception()
        # A reader only ever ends by failing; a clean end is a lost connection too.
        raise error if error is not None else RedisConnectionError("pub/sub reader ended")

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
            if msg["type"] == "sunsubscribe":
                # Redis drops a shard channel whose slot moved away: its notices
                # now go elsewhere, so reconnect (and re-read) rather than miss them.
                raise RedisConnectionError(f"shard channel {_str(msg['channel'])} unsubscribed")
            self._dispatch(msg)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "smessage":
            return  # pong
        partition = self._partitions.get(_str(msg["channel"]))
        if partition is None:
            return
        heard = notice.read(msg["data"])
        if heard.key is None:
            # Malformed: it may have been about any key of the partition, so
            # every follower there re-reads (a spare read costs less than a miss).
            for name, followed in self._followers.items():
                if self._space.partition(name) == partition:
                    _wake(followed)
            return
        if self._space.partition(heard.key) != partition:
            # Only the key's own partition announces it (a cluster runs the commit
            # there); anything else is a misplaced publisher, not a notice.
            log.warning(
                "notice for %r on the channel of partition %d ignored", heard.key, partition
            )
            return
        target = self._followers.get(heard.key)
        if target is not None:
            _wake(target, heard)

    def _mark_all_dirty(self) -> None:
        for followed in self._followers.values():
            _wake(followed)

    def _count(self) -> int:
        return sum(len(f.followers) for f in self._followers.values())


def _wake(followed: Followed, heard: notice.Heard | None = None) -> None:
    """Announce ``heard`` (``None``: something unknown) to the key's followers."""
    # Counted before anyone wakes: a follower reads the count once awake.
    followed.announced += 1
    if heard is None:
        for sub in followed.followers:
            sub.dirty.set()
        return
    if heard.state is not None:
        followed.carried = Carried(followed.announced, heard.state)
    merged_into, appended_ms = heard.merged_into, heard.appended_ms
    for sub in followed.followers:
        if merged_into is not None:
            sub.merged_into = merged_into
        if appended_ms is not None and (sub.appended_ms is None or appended_ms < sub.appended_ms):
            sub.appended_ms = appended_ms
        sub.dirty.set()


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
