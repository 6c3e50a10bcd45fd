"""The notification outbox in Redis: sweep, read, acknowledge. Thin I/O shell.

``P:n`` is a Redis stream written in the same atomic steps as the state its
notifications describe: the commit script appends resumes, ``sweep.lua``
abandoned carts. Relays (one per worker, ``streams/worker/relay.py``) read it as one
consumer group, so each entry goes to one relay and stays on that relay's
pending entries list until acknowledged. An entry is acknowledged only after
Kafka accepted its notification, and its KPIs are counted by that
acknowledgement (``ack.lua``): at least once on the topic, exactly once in the
KPIs.

An entry read but not acknowledged is published again by one of two paths,
because two different things went wrong:

* the relay's own publish failed (Kafka unreachable or slow to answer): the
  relay is alive and knows it, so its next round re-reads its own pending
  entries (``XREADGROUP`` from id ``0``) before anything else; the relay's
  backoff paces the retries, no idle time is waited for;
* the relay died between reading and acknowledging (a crash; a restarted
  worker reads under a new consumer name): no one knows, so another relay
  takes its entries over (``XAUTOCLAIM``) once they have been idle
  ``claim_after_ms`` (``CONTINUITY_NOTIFICATION_CLAIM_AFTER``). That time must
  be long: a relay still publishing would otherwise lose its entries to another
  and each would be sent twice.

Claiming alone would serve both, but would hold every notification of a failed
round for the whole claim time after Kafka is back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from streams.store import keys
from streams.store.scripts import register

GROUP = "relay"


@dataclass(frozen=True)
class Entry:
    """One outbox entry as read: its stream id and fields."""

    id: bytes
    fields: Mapping[bytes, bytes]


class Outbox:
    """One relay's view of the outbox stream ``P:n``."""

    def __init__(
        self, redis: Redis, prefix: str, consumer: str, claim_after_ms: int = 30_000
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.stream = keys.outbox(prefix)
        self.consumer = consumer
        self.claim_after_ms = claim_after_ms
        self._sweep = register(redis, "sweep.lua")
        self._ack = register(redis, "ack.lua")

    async def ensure_group(self) -> None:
        """Create the relays' consumer group, reading from the stream's start."""
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def sweep(self, now_ms: int, limit: int = 500) -> int:
        """Move carts abandoned by ``now_ms`` into the outbox; return how many."""
        return int(await self._sweep(args=[self.prefix, now_ms, limit]))

    async def read(self, count: int, block_ms: int) -> list[Entry]:
        """Entries to publish: this relay's own unacknowledged ones first (a failed
        round's, again at once), then dead relays' stalled ones, then new ones
        (waiting up to ``block_ms`` for those)."""
        own = await self._read_group("0", count, None)
        if own:
            return own
        _, claimed, *_ = await self.redis.xautoclaim(
            self.stream, GROUP, self.consumer, self.claim_after_ms, "0-0", count=count
        )
        entries = [Entry(i, f) for i, f in claimed if f]
        if entries:
            return entries
        return await self._read_group(">", count, block_ms)

    async def _read_group(self, start: str, count: int, block_ms: int | None) -> list[Entry]:
        """``XREADGROUP`` from ``start``: ``0`` this consumer's pending entries, ``>`` new."""
        reply: Any = await self.redis.xreadgroup(
            GROUP, self.consumer, {self.stream: start}, count=count, block=block_ms
        )
        rows = [(i, f) for _, found in reply or () for i, f in found]
        if gone := [i for i, f in rows if not f]:
            # Deleted while pending: nothing left to publish, and left on the list
            # they would fill every read of it ahead of the entries behind them.
            await self.redis.xack(self.stream, GROUP, *gone)
        return [Entry(i, f) for i, f in rows if f]

    async def ack(self, done: Sequence[tuple[bytes, Mapping[str, int]]]) -> list[bool]:
        """Acknowledge published entries with their KPI increments; True where this
        call was the first to acknowledge (the increments were counted)."""
        args: list[Any] = [self.prefix, GROUP]
        for entry_id, kpis in done:
            args.extend((entry_id, len(kpis)))
            for name, n in kpis.items():
                args.extend((name, n))
        return [int(flag) == 1 for flag in await self._ack(args=args)]

    async def heartbeat(self, now_ms: int) -> None:
        """Say this worker is alive (``P:hb``); forget workers silent for an hour.

        Readers (the gateway) tell from it whether any worker is folding, so a
        frontend can say the state may be behind while none is.
        """
        key = keys.heartbeats(self.prefix)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {self.consumer: now_ms})
            pipe.zremrangebyscore(key, "-inf", now_ms - 3_600_000)
            await pipe.execute()

    async def pending(self) -> int:
        """Entries not yet acknowledged (published or not)."""
        return int(await self.redis.xlen(self.stream))
