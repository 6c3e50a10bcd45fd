"""Forwards between partitions for tests that drive a ``BatchProcessor`` without Kafka.

The store-level tests hand records to the processor themselves; ``ForwardPump``
does the same with what the commits wrote to the partitions' forwards streams
(``cont:{pN}:fw``): it reads them as the relay does (``ForwardOutbox``), numbers
them per destination partition as the ``session-forwards`` topic would, with the
relay's origin and entry-id marks, and processes each on its destination, until
no partition has any left. The relay and the topic themselves are proven with a
real broker in ``tests/worker/test_forward_relay.py`` and the e2e tests.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson
from redis.asyncio import Redis, RedisCluster

from schemas.topics import SESSION_FORWARDS
from streams.core.plan import Plan, Record
from streams.store.forwards import ForwardEntry, ForwardOutbox
from streams.store.keys import Space
from streams.worker.processor import BatchProcessor


@dataclass
class ForwardPump:
    """Carries forward records from the commits' outboxes to their partitions."""

    redis: Redis | RedisCluster
    space: Space
    processor: BatchProcessor
    # destination partition -> the next session-forwards offset there
    offsets: Counter[int] = field(default_factory=Counter)
    plans: list[Plan] = field(default_factory=list)
    # The key prefix named as the sender (the relay names its own; a test may lie).
    sender: str | None = None

    async def drain(self, rounds: int = 100) -> int:
        """Deliver forwards until none is left; return how many were delivered."""
        delivered = 0
        for _ in range(rounds):
            moved = 0
            for origin in self.space.all_partitions():
                outbox = ForwardOutbox(self.redis, self.space, origin, holder="pump")
                assert await outbox.hold()
                entries = await outbox.read(await outbox.cursor(), 1000)
                for entry in entries:
                    assert isinstance(entry, ForwardEntry), entry
                    record = Record(
                        SESSION_FORWARDS, entry.partition, self.offsets[entry.partition],
                        entry.key, entry.value, forwarded=(origin, entry.id),
                        sender=self.sender or self.space.prefix,
                    )  # fmt: skip
                    self.offsets[entry.partition] += 1
                    self.plans.append(await self.processor.process([record]))
                    assert await outbox.advance(entry.id)
                    moved += 1
                await outbox.release()
            delivered += moved
            if not moved:
                return delivered
        raise AssertionError(f"forwards still flowing after {rounds} rounds")


def homed(records: list[Record], space: Space) -> list[Record]:
    """``records`` each on its key's partition (the customer's, else the guest's), as a
    producer puts them, offsets 0.. per topic-partition in the given order."""
    ends: Counter[tuple[str, int]] = Counter()
    out = []
    for r in records:
        body = orjson.loads(r.value or b"{}")
        partition = space.partition(str(body.get("customer_id") or body.get("anonymous_id")))
        out.append(
            Record(r.topic, partition, ends[r.topic, partition], r.key, r.value, r.timestamp_ms)
        )
        ends[r.topic, partition] += 1
    return out
