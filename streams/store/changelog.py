"""The session changelog's outbox in Redis: lease, read in order, sweep, advance. Thin I/O.

``P:cl`` is a Redis stream the commit script appends to in the same atomic
step as the state it describes (``commit.lua``; erasures and log resets add
theirs), so Redis order is commit order. Unlike the notification outbox,
which any relay may take entries of, this one is published by one relay at
a time, in stream order, round by round (a redis-py lock, ``P:clr``): that
is what lets a watermark say "everything before me is on the topic".
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from streams.core.changelog import Cursor
from streams.store import keys
from streams.store.scripts import register


@dataclass(frozen=True)
class Entry:
    """One changelog entry as read: its stream id and fields."""

    id: str
    fields: Mapping[bytes, bytes]


class ChangelogOutbox:
    """One relay's handle on ``P:cl``; only the lease holder reads and advances."""

    def __init__(
        self, redis: Redis, prefix: str, holder: str = "relay", lease_seconds: float = 10.0
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        # The lease's value names its holder (an operator's GET tells which worker publishes).
        self.token = f"{holder}:{uuid.uuid4().hex[:8]}"
        self.stream = keys.changelog(prefix)
        self.lease: Lock = redis.lock(keys.changelog_lease(prefix), timeout=lease_seconds)
        self._sweep = register(redis, "clsweep.lua")
        self._ack = register(redis, "clack.lua")

    async def hold(self) -> bool:
        """Take or renew the lease; True while this relay holds it."""
        if await self.lease.owned():
            return bool(await self.lease.reacquire())
        return bool(await self.lease.acquire(blocking=False, token=self.token))

    async def cursor(self) -> Cursor:
        """Where publishing stands: the last entry published and the offsets then."""
        raw: Any = await self.redis.get(keys.changelog_cursor(self.prefix))
        return Cursor.loads(raw)

    async def read(self, after: str, count: int) -> list[Entry]:
        """Up to ``count`` entries after the id ``after``, in order."""
        rows: Any = await self.redis.xrange(self.stream, f"({after}", "+", count=count)
        return [Entry(i.decode() if isinstance(i, bytes) else i, f) for i, f in rows or ()]

    async def advance(self, cursor: Cursor) -> bool:
        """Store the cursor and drop the entries up to it; False if the lease was lost."""
        token = self.lease.local.token
        if token is None:
            return False
        args = [self.prefix, token, cursor.seq, cursor.dumps()]
        return int(await self._ack(args=args)) == 1

    async def sweep(self, now_ms: int, limit: int = 500) -> int:
        """Move the keys Redis forgot by ``now_ms`` into the stream as tombstones."""
        return int(await self._sweep(args=[self.prefix, now_ms, limit]))

    async def pending(self) -> int:
        """Entries not yet published."""
        return int(await self.redis.xlen(self.stream))

    async def release(self) -> None:
        """Give the lease up (a worker stopping), so another relay takes over at once."""
        if await self.lease.owned():
            await self.lease.release()
