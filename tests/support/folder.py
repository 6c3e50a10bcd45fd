"""The workers' fold, in the test's process: for the operator commands on Redis Cluster.

``Folder`` reads what a real broker holds since its last round and applies it
with the workers' own batch step (``BatchProcessor`` in ``forward`` mode, every
commit on its partition's slot), then carries the forwards between partitions
(``InlineForwards``); ``relay_changelog`` publishes each partition's changelog
stream to ``session-changelog`` with the workers' relay step. The worker
process, its relays and the ``session-forwards`` topic are proven with real
processes elsewhere (``tests/worker``); here what is under test is the
operator commands, run against a Redis that real folding filled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.topics import SESSION_CHANGELOG, SOURCE_TOPICS
from streams.core.plan import RecordOutcome
from streams.kafka import clients
from streams.kafka.reader import TopicReader
from streams.kafka.records import from_kafka
from streams.ops.inline_forwards import InlineForwards
from streams.store.changelog import ChangelogOutbox
from streams.store.state import RedisState
from streams.worker.changelog_relay import publish_round
from streams.worker.processor import BatchProcessor


@dataclass
class Folder:
    """Folds the source topics into ``state`` as forward-mode workers would."""

    bootstrap: str
    state: RedisState
    topics: Sequence[str] = SOURCE_TOPICS
    dead: list[RecordOutcome] = field(default_factory=list)
    # (topic, partition) -> the next offset to read
    next: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.processor = BatchProcessor(self.state, self._dead_letters, forward=True)
        self.pump = InlineForwards(self.state.redis, self.state.space, self.processor)

    async def _dead_letters(self, outcomes: Sequence[RecordOutcome]) -> None:
        self.dead.extend(outcomes)

    async def fold(self) -> int:
        """Apply every record published since the last round (up to the ends now), then
        the forwards they caused; return how many source records were read."""
        reader = TopicReader(self.bootstrap, self.topics, start=self.next, job="tests")
        read = 0
        async with reader:
            async for batch in reader:
                await self.processor.process([from_kafka(m) for m in batch])
                for m in batch:
                    self.next[(m.topic, m.partition)] = m.offset + 1
                read += len(batch)
        await self.pump.drain()
        return read

    async def follow(self, interval: float = 0.1) -> None:
        """Fold round after round, until cancelled (a worker that keeps up)."""
        while True:
            await self.fold()
            await asyncio.sleep(interval)


async def relay_changelog(bootstrap: str, state: RedisState) -> int:
    """Publish every partition's changelog entries to ``session-changelog``, as the
    workers' relay does; return how many entries went."""
    producer = clients.producer(bootstrap, "tests")
    await producer.start()
    try:

        async def publish(
            key: str, value: bytes | None, headers: list[tuple[str, bytes]], partition: int
        ) -> Any:
            return await producer.send(
                SESSION_CHANGELOG, value, key=key.encode(), partition=partition, headers=headers
            )

        sent = 0
        for n in state.space.all_partitions():
            outbox = ChangelogOutbox(state.redis, state.space, n, "tests")
            assert await outbox.hold()
            sent += await publish_round(outbox, publish, 10_000)
            await outbox.release()
        await producer.flush()
        return sent
    finally:
        await producer.stop()
