"""The session changelog's outbox in Redis: lease, read in order, sweep, advance. Thin I/O.

Every partition N has its own stream ``cont:{pN}:cl``, which the partition's
commit script appends to in the same atomic step as the state it describes
(``commit.lua``; erasures and log resets add theirs), so the stream's order
is the partition's commit order. Unlike the notification outbox, which any
relay may take entries of, each partition's stream is published by one relay
at a time, in stream order, round by round, under that partition's lease (a
redis-py lock, ``cont:{pN}:clr``): that is what lets the partition's watermark
say "everything of this partition before me is on the topic". Different
workers may hold different partitions' leases.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.lock import Lock

from streams.core.changelog import Cursor
from streams.store import keys
from streams.store.keys import Space
from streams.store.scripts import register
from streams.store.stream_reads import entries_after


@dataclass(frozen=True)
class Entry:
    """One changelog entry as read: its stream id and fields."""

    id: str
    fields: Mapping[bytes, bytes]


class ChangelogOutbox:
    """One relay's handle on partition ``partition``'s stream; only the holder of the
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
        self.stream = keys.changelog(space, partition)
        self.lease: Lock = redis.lock(keys.changelog_lease(space, partition), timeout=lease_seconds)
        self._head: list[str | int] = [space.prefix, space.partitions, partition]
        self._sweep = register(redis, "clsweep.lua")
        self._ack = register(redis, "clack.lua")

    async def hold(self) -> bool:
        """Take or renew the partition's lease; True while this relay holds it."""
        if await self.lease.owned():
            return bool(await self.lease.reacquire())
        return bool(await self.lease.acquire(blocking=False, token=self.token))

    async def cursor(self) -> Cursor:
        """Where publishing stands: the last entry published and the offsets then."""
        raw: Any = await self.redis.get(keys.changelog_cursor(self.space, self.partition))
        return Cursor.loads(raw)

    async def forwards_published(self) -> str | None:
        """The id of the partition's last forward the forward relay has published (its
        cursor), or None if none was."""
        raw: Any = await self.redis.get(keys.forwards_cursor(self.space, self.partition))
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def read(self, after: str, count: int, wait_ms: int = 0) -> list[Entry]:
        """Up to ``count`` entries after the id ``after``, in order; with ``wait_ms``, a
        read that finds none waits that long for the first to be written."""
        rows = await entries_after(self.redis, self.stream, after, count, wait_ms)
        return [Entry(i.decode() if isinstance(i, bytes) else i, f) for i, f in rows]

    async def advance(self, cursor: Cursor) -> bool:
        """Store the cursor and drop the entries up to it; False if the lease was lost."""
        token = self.lease.local.token
        if token is None:
            return False
        args = [*self._head, token, cursor.seq, cursor.dumps()]
        return int(await self._ack(keys=[self.stream], args=args)) == 1

    async def sweep(self, now_ms: int, limit: int = 500) -> int:
        """Move the partition's keys Redis forgot by ``now_ms`` into the stream as
        tombstones."""
        return int(await self._sweep(keys=[self.stream], args=[*self._head, now_ms, limit]))

    async def pending(self) -> int:
        """Entries not yet published."""
        return int(await self.redis.xlen(self.stream))

    async def release(self) -> None:
        """Give the lease up (a worker stopping), so another relay takes over at once."""
        if await self.lease.owned():
            await self.lease.release()


def every_partition(
    redis: Redis | RedisCluster, space: Space, holder: str = "relay", lease_seconds: float = 10.0
) -> list[ChangelogOutbox]:
    """One handle per partition, each with its own lease (a worker's relays)."""
    return [ChangelogOutbox(redis, space, n, holder, lease_seconds) for n in space.all_partitions()]
