"""Reading sessions from Redis, and read-your-writes waits.

``locate`` resolves a customer or guest id to its session key and reads that
session; ``view`` reads one key as it is (a stream follows one key and must
notice when a guest key was merged away, rather than silently follow the
alias to a customer's session the client may not be allowed to read).
``stored`` is the same read without the parse: a stream sends the stored
JSON on (``streams/gateway/public_json.py``) and needs no ``Session``.

``wait`` implements blocking reads (Consul's blocking-query style): it
subscribes to the session's notices *first*, then re-checks the condition
after every notice, and also every ``poll`` seconds, because some progress
publishes nothing (an event the worker rejected still advances the applied
offset) and pub/sub may be down. Whatever happens, it returns the current
state by the deadline and says whether the condition was met.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from schemas.session import Session
from streams.core.session_codec import decode as decode_session
from streams.gateway import metrics
from streams.gateway.fanout import Fanout, FanoutUnavailable, Subscriber
from streams.gateway.params import Position, ReadWait
from streams.store import keys
from streams.store.client import UNAVAILABLE, Client
from streams.store.keys import Space


class RedisUnavailable(Exception):
    """Redis did not answer; the request gets a 503."""


@dataclass(frozen=True)
class View:
    """A session key and what Redis holds for it right now."""

    key: str
    session: Session | None
    merged_into: str | None = None

    @property
    def version(self) -> int:
        """The session's version, 0 when there is none."""
        return self.session.version if self.session is not None else 0


@dataclass(frozen=True)
class Stored:
    """A session key as Redis stores it: the session's stored value, or its merge target."""

    key: str
    blob: bytes | None
    merged_into: str | None = None


# A session and its alias in one atomic read. A script declared ``no-writes`` runs
# where a MULTI/EXEC read does not: on a read-only replica during a failover and
# on a primary at its maxmemory (Redis refuses every queued command of a
# transaction there, reads included), so reads go on while writes are refused.
_VIEW = """#!lua flags=no-writes
return {redis.call('HGET', KEYS[1], 'd'), redis.call('GET', KEYS[2])}
"""


class Sessions:
    """Reads for the routes. Holds no state of its own."""

    def __init__(self, redis: Client, space: Space, fanout: Fanout, poll: float = 0.25) -> None:
        self._redis = redis
        self._space = space
        self._fanout = fanout
        self._view = redis.register_script(_VIEW)
        self._poll = poll

    async def locate(self, some_id: str) -> View:
        """The session ``some_id`` resolves to (following a merged guest's alias)."""
        view = await self.view(some_id)
        if view.merged_into is None:
            return view
        # An alias is permanent and points at a customer, never at another alias.
        return await self.view(view.merged_into)

    async def view(self, key: str) -> View:
        """Exactly key ``key``: its session, or the customer it was merged into, or nothing."""
        stored = await self.stored(key)
        if stored.blob is not None:
            return View(key, decode_session(stored.blob))
        return View(key, None, stored.merged_into)

    async def stored(self, key: str) -> Stored:
        """``view`` unparsed: the stored session of ``key``, or its merge target, or nothing."""
        try:
            # Both tagged with ``key``'s partition: one slot, one script.
            names = [keys.session(self._space, key), keys.alias(self._space, key)]
            blob, alias = await self._view(keys=names)
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None
        if blob is not None:
            return Stored(key, blob)
        return Stored(key, None, _s(alias) if alias is not None else None)

    async def applied(self, positions: tuple[Position, ...]) -> bool:
        """Has the worker applied (or dead-lettered) every one of ``positions``?"""
        if not positions:
            return True
        # ``<topic>:N`` is applied in partition N's offsets hash: one HMGET per partition.
        by_partition: dict[int, list[Position]] = {}
        for p in positions:
            by_partition.setdefault(p.partition, []).append(p)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for n, group in by_partition.items():
                    pipe.hmget(keys.offsets(self._space, n), [p.tp for p in group])
                replies = await pipe.execute()
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None
        return all(
            v is not None and int(v) >= p.offset
            for group, raw in zip(by_partition.values(), replies, strict=True)
            for p, v in zip(group, raw, strict=True)
        )

    async def wait(self, some_id: str, want: ReadWait) -> tuple[View, bool]:
        """The session of ``some_id`` once ``want`` holds, or by its timeout: (view, satisfied)."""
        if not want.wanted:
            return await self.locate(some_id), True
        view, holds = await self._read(some_id, want)
        if holds:
            return view, True
        metrics.WAITING.inc()
        try:
            async with self._notices(view.key) as sub:
                view, ok = await self._wait_loop(some_id, want, sub)
        finally:
            metrics.WAITING.dec()
        metrics.READ_WAITS.labels("satisfied" if ok else "timeout").inc()
        return view, ok

    async def _wait_loop(self, some_id: str, want: ReadWait, sub: Subscriber) -> tuple[View, bool]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + want.timeout
        while True:
            # Clear before reading: a notice landing during the read wakes the next round.
            sub.dirty.clear()
            view, holds = await self._read(some_id, want)
            if holds:
                return view, True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return view, False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self._poll, remaining)):
                    await sub.dirty.wait()

    async def _read(self, some_id: str, want: ReadWait) -> tuple[View, bool]:
        """The session, and whether it satisfies ``want``.

        The applied offsets are read before the session: a commit writes both
        at once, so a session read after its position showed as applied holds
        that commit. Read the other way round, a commit landing between the two
        reads made a stale session pass for read-your-writes.
        """
        applied = await self.applied(want.after)
        # A login applied on the customer's partition may still wait for its guest's
        # half (docs/merge-across-partitions.md): the write is not readable until the
        # merge lands, which clears the wait and writes the session in one commit.
        if applied and want.after:
            applied = not await self.waiting(some_id)
        view = await self.locate(some_id)
        fresh = want.min_version is None or view.version >= want.min_version
        return view, applied and fresh

    async def waiting(self, some_id: str) -> bool:
        """Whether ``some_id``'s session waits for a merge across partitions."""
        try:
            held = await self._redis.hexists(
                keys.waiting(self._space, self._space.partition(some_id)), some_id
            )
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None
        return bool(held)

    @contextlib.asynccontextmanager
    async def _notices(self, key: str) -> AsyncIterator[Subscriber]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                sub = await stack.enter_async_context(self._fanout.subscribe(key))
            except FanoutUnavailable:
                # Pub/sub is down: a subscriber nobody wakes; the poll alone decides.
                sub = Subscriber(key)
            yield sub


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
