"""The forwards outbox in Redis: lease, read in order, advance. Thin I/O.

A commit that hands work to another partition (a login merging a guest
session held on the guest's partition into the customer's, on another) appends
a forward record to its own partition's stream ``cont:{pN}:fw``, in the same
atomic step as the state it comes from: fields ``p`` (the destination
partition, decimal), ``k`` (the record key) and ``v`` (the record value). Like
the changelog, each partition's stream is published by one relay at a time,
in stream order, under the partition's lease (a redis-py lock,
``cont:{pN}:fwr``); after Kafka acknowledged a round, ``fwack.lua`` moves the
cursor (``cont:{pN}:fwc``) and trims the stream in one step, and only while
the lease is still this relay's. A relay that crashed or lost its lease
leaves the rest to the next holder, which sends again from the cursor.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.lock import Lock

from schemas.topics import SESSION_FORWARDS
from streams.store import keys
from streams.store.keys import Space
from streams.store.scripts import register
from streams.store.stream_reads import entries_after

# The cursor before anything was published: every entry comes after it.
START = "0-0"


class LeaseLost(RuntimeError):
    """The lease was gone when a round was to advance: its holder delivers the round again."""


@dataclass(frozen=True)
class ForwardEntry:
    """One forward record as read: its stream id, destination partition, key and value."""

    id: str
    partition: int
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Unreadable:
    """An entry that is no forward record (never written by this code): why not."""

    id: str
    why: str


def parse_entry(
    entry_id: str, fields: Mapping[bytes, bytes], partitions: int
) -> ForwardEntry | Unreadable:
    """The forward record of one stream entry, or why it is none."""
    try:
        partition = int(fields[b"p"])
        key, value = fields[b"k"], fields[b"v"]
    except (KeyError, ValueError) as exc:
        return Unreadable(entry_id, f"fields {sorted(fields)}: {exc!r}")
    if not 0 <= partition < partitions:
        return Unreadable(entry_id, f"destination partition {partition} of {partitions}")
    return ForwardEntry(entry_id, partition, bytes(key), bytes(value))


class ForwardOutbox:
    """One relay's handle on partition ``partition``'s forwards; only the holder of the
    partition's lease reads and advances it."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        space: Space,
        partition: int,
        holder: str = "relay",
        lease_seconds: float = 10.0,
    ) -> None:
        if partition not in space.all_partitions():
            raise ValueError(f"partition {partition} is not one of {space.partitions}")
        self.redis = redis
        self.space = space
        self.partition = partition
        # The lease's value names its holder (an operator's GET tells which worker publishes).
        self.token = f"{holder}:{uuid.uuid4().hex[:8]}"
        self.stream = keys.forwards(space, partition)
        self.lease: Lock = redis.lock(keys.forwards_lease(space, partition), timeout=lease_seconds)
        self._head: list[str | int] = [space.prefix, space.partitions, partition]
        self._ack = register(redis, "fwack.lua")

    async def hold(self) -> bool:
        """Take or renew the partition's lease; True while this relay holds it."""
        if await self.lease.owned():
            return bool(await self.lease.reacquire())
        return bool(await self.lease.acquire(blocking=False, token=self.token))

    async def cursor(self) -> str:
        """The id of the last entry published (``0-0``: none yet)."""
        raw: Any = await self.redis.get(keys.forwards_cursor(self.space, self.partition))
        return START if raw is None else _text(raw)

    async def read(
        self, after: str, count: int, wait_ms: int = 0
    ) -> list[ForwardEntry | Unreadable]:
        """Up to ``count`` entries after the id ``after``, in order; with ``wait_ms``, a
        read that finds none waits that long for the first to be written."""
        rows = await entries_after(self.redis, self.stream, after, count, wait_ms)
        partitions = self.space.partitions
        return [parse_entry(_text(i), f, partitions) for i, f in rows]

    async def advance(self, entry_id: str) -> bool:
        """Store ``entry_id`` as the cursor and drop the entries up to it, in one step;
        False (and nothing changed) if this relay no longer holds the lease."""
        token = self.lease.local.token
        if token is None:
            return False
        args = [*self._head, token, entry_id]
        return int(await self._ack(keys=[self.stream], args=args)) == 1

    async def round(
        self,
        count: int,
        deliver: Callable[[Sequence[ForwardEntry | Unreadable]], Awaitable[None]],
        wait_ms: int = 0,
    ) -> int:
        """One round under the lease: the entries after the cursor (at most ``count``;
        with ``wait_ms``, waiting that long for the first), handed to ``deliver``, then
        the cursor moved past them; how many the round took (0: none).

        The relay publishes them, a rebuild folds them in-process: both hold the
        lease, and the cursor moves only once ``deliver`` returned. Raises what
        ``deliver`` raised, or ``LeaseLost``, leaving the cursor where it was.
        """
        entries = await self.read(await self.cursor(), count, wait_ms)
        if not entries:
            return 0
        await deliver(entries)
        if not await self.advance(entries[-1].id):
            raise LeaseLost(f"lost partition {self.partition}'s lease mid-round")
        return len(entries)

    async def pending(self) -> int:
        """Entries not yet published."""
        return int(await self.redis.xlen(self.stream))

    async def release(self) -> None:
        """Give the lease up (a worker stopping), so another relay takes over at once."""
        if await self.lease.owned():
            await self.lease.release()


async def mark_applied(
    redis: Redis | RedisCluster,
    space: Space,
    partition: int,
    offset: int,
    fingerprint: str,
    marks: Mapping[int, str],
) -> None:
    """Record ``session-forwards`` partition ``partition`` as applied up to ``offset`` (the
    record there has ``fingerprint``), and the last forward applied per origin
    (``marks``): one transaction, in the partition's slot."""
    tp = f"{SESSION_FORWARDS}:{partition}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.offsets(space, partition), tp, offset)
        pipe.hset(keys.fingerprints(space, partition), tp, fingerprint)
        if marks:
            seen: dict[Any, Any] = {str(o): seq for o, seq in marks.items()}
            pipe.hset(keys.forwards_seen(space, partition), mapping=seen)
        await pipe.execute()


def every_partition(
    redis: Redis | RedisCluster, space: Space, holder: str = "relay", lease_seconds: float = 10.0
) -> list[ForwardOutbox]:
    """One handle per partition, each with its own lease (a worker's relays)."""
    return [ForwardOutbox(redis, space, n, holder, lease_seconds) for n in space.all_partitions()]


def _text(raw: str | bytes) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
