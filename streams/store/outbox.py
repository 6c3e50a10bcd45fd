"""The notification outbox in Redis: sweep, read, acknowledge. Thin I/O shell.

Every partition has its own outbox, ``cont:{pN}:n``: a Redis stream written in
the same atomic steps as the state its notifications describe (the commit
script of partition N appends resumes, ``sweep.lua`` abandoned carts), so it
shares the partition's slot on a cluster. Relays (one per worker,
``streams/worker/relay.py``) serve every partition's stream, each read as one
consumer group, so each entry goes to one relay and stays on that relay's
pending entries list until acknowledged. Every command names one partition's
stream: on a cluster the partitions live in different slots, so no read spans
two. An entry is acknowledged only after Kafka accepted its notification, and
its KPIs are counted by that acknowledgement (``ack.lua``, in the partition's
KPI hash): at least once on the topic, exactly once in the KPIs.

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

New entries are polled, not waited for with a blocking read: one blocking
``XREADGROUP`` cannot span partitions on a cluster, and one per partition would
hold a connection each. A poll is one pipelined round trip for all partitions.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from streams.store import keys
from streams.store.keys import Space
from streams.store.scripts import register

GROUP = "relay"
# How often a read waiting for new entries polls the partitions' streams.
POLL_MS = 50


@dataclass(frozen=True)
class Entry:
    """One outbox entry as read: its partition, stream id and fields."""

    partition: int
    id: bytes
    fields: Mapping[bytes, bytes]


class Outbox:
    """One relay's view of every partition's outbox stream ``cont:{pN}:n``."""

    def __init__(
        self, redis: Redis | RedisCluster, space: Space, consumer: str, claim_after_ms: int = 30_000
    ) -> None:
        self.redis = redis
        self.space = space
        self.streams = {n: keys.outbox(space, n) for n in space.all_partitions()}
        self.consumer = consumer
        self.claim_after_ms = claim_after_ms
        self._sweep = register(redis, "sweep.lua")
        self._ack = register(redis, "ack.lua")

    async def ensure_group(self) -> None:
        """Create the relays' consumer group on every partition's stream, from its start."""
        for stream in self.streams.values():
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def sweep(self, now_ms: int, limit: int = 500) -> int:
        """Move carts abandoned by ``now_ms`` into their partition's outbox; return how
        many (at most ``limit`` per partition)."""
        head: list[str | int] = [self.space.prefix, self.space.partitions]
        done = await asyncio.gather(
            *(
                self._sweep(keys=[keys.abandonment(self.space, n)], args=[*head, n, now_ms, limit])
                for n in self.streams
            )
        )
        return sum(int(d) for d in done)

    async def read(self, count: int, block_ms: int) -> list[Entry]:
        """Entries to publish: this relay's own unacknowledged ones first (a failed
        round's, again at once), then dead relays' stalled ones, then new ones
        (polling up to ``block_ms`` for those). At most ``count`` per partition."""
        own = await self._read_group("0", count)
        if own:
            return own
        claimed = await self._claim(count)
        if claimed:
            return claimed
        deadline = time.monotonic() + block_ms / 1000
        while True:
            new = await self._read_group(">", count)
            left = deadline - time.monotonic()
            if new or left <= 0:
                return new
            await asyncio.sleep(min(left, POLL_MS / 1000))

    async def _read_group(self, start: str, count: int) -> list[Entry]:
        """``XREADGROUP`` of each partition's stream from ``start``: ``0`` this
        consumer's pending entries, ``>`` new ones. One command per stream."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.streams.values():
                pipe.xreadgroup(GROUP, self.consumer, {stream: start}, count=count)
            replies: list[Any] = await pipe.execute()
        rows = [
            (n, i, f)
            for n, reply in zip(self.streams, replies, strict=True)
            for _, found in reply or ()
            for i, f in found
        ]
        gone: dict[int, list[bytes]] = defaultdict(list)
        for n, i, f in rows:
            if not f:
                gone[n].append(i)
        for n, ids in gone.items():
            # Deleted while pending: nothing left to publish, and left on the list
            # they would fill every read of it ahead of the entries behind them.
            await self.redis.xack(self.streams[n], GROUP, *ids)
        return [Entry(n, i, f) for n, i, f in rows if f]

    async def _claim(self, count: int) -> list[Entry]:
        """Other relays' entries idle ``claim_after_ms``, taken over (``XAUTOCLAIM``)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.streams.values():
                pipe.xautoclaim(stream, GROUP, self.consumer, self.claim_after_ms, "0-0", count)
            replies: list[Any] = await pipe.execute()
        return [
            Entry(n, i, f)
            for n, (_, claimed, *_) in zip(self.streams, replies, strict=True)
            for i, f in claimed
            if f
        ]

    async def ack(self, done: Sequence[tuple[Entry, Mapping[str, int]]]) -> list[bool]:
        """Acknowledge published entries with their KPI increments; True where this
        call was the first to acknowledge (the increments were counted). One
        ``ack.lua`` call per partition, in that partition's slot."""
        by_partition: dict[int, list[int]] = defaultdict(list)
        for at, (entry, _) in enumerate(done):
            by_partition[entry.partition].append(at)
        flags = [False] * len(done)
        for n, ats in by_partition.items():
            args: list[Any] = [self.space.prefix, self.space.partitions, n, GROUP]
            for at in ats:
                entry, kpis = done[at]
                args.extend((entry.id, len(kpis)))
                for name, amount in kpis.items():
                    args.extend((name, amount))
            reply = await self._ack(keys=[self.streams[n]], args=args)
            for at, flag in zip(ats, reply, strict=True):
                flags[at] = int(flag) == 1
        return flags

    async def heartbeat(self, now_ms: int) -> None:
        """Say this worker is alive (``cont:hb``, global); forget workers silent for an hour.

        Readers (the gateway) tell from it whether any worker is folding, so a
        frontend can say the state may be behind while none is.
        """
        key = keys.heartbeats(self.space)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {self.consumer: now_ms})
            pipe.zremrangebyscore(key, "-inf", now_ms - 3_600_000)
            await pipe.execute()

    async def pending(self) -> int:
        """Entries not yet acknowledged (published or not), over every partition."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.streams.values():
                pipe.xlen(stream)
            lengths: list[Any] = await pipe.execute()
        return sum(int(n) for n in lengths)
