"""Reading a Redis stream after an entry id, at once or waiting for the next. Thin I/O.

The relays' outboxes (the changelog's and the forwards', per partition) are read
the same way: entries after the cursor, in order, and when there are none a
blocked ``XREAD`` rather than a poll, so an idle partition costs Redis nothing
and a new entry is read the moment its commit wrote it.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster

Row = tuple[Any, Any]
"""An entry as redis-py returns it: its id and its fields."""


async def entries_after(
    redis: Redis | RedisCluster, stream: str, after: str, count: int, wait_ms: int = 0
) -> list[Row]:
    """Up to ``count`` entries of ``stream`` after the id ``after``, in order; with
    ``wait_ms``, a read that finds none waits that long for the first to be written."""
    rows: Any
    if wait_ms > 0:
        found: Any = await redis.xread({stream: after}, count=count, block=wait_ms)
        rows = found[0][1] if found else ()
    else:
        rows = await redis.xrange(stream, f"({after}", "+", count=count)
    return list(rows or ())
