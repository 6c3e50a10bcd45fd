"""Recompute every session from the retained topics into Redis. Thin edge.

A plain consumer (manual assignment, no consumer group, so running workers
are not disturbed) reads every partition of the source topics from its
beginning to the end it had when the rebuild started: the fetch high
watermark of the partition's first fetch (not ListOffsets, which the embedded
broker answers wrongly). Batches are planned by the same pure planner and
committed by the same ``RedisState.commit`` as the workers', into the target
prefix, applied offsets and fingerprints included; so workers pointed at the
rebuilt prefix carry on from where it ends. Records are not dead-lettered
again (the live run did that once already).

Erasures are restored from the ``session-erasures`` topic before the first
batch, so no record an erasure covers is ever folded, even into a Redis
that lost everything (``streams/core/erasure.py``).

Arrival order across topics is the consumer's, not the live run's, so the
fields that depend on it may differ from the live state (README: Rebuild).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from streams.core.dead_letter import replayed_from
from streams.core.fold import DEFAULT_LIMITS, Limits
from streams.core.plan import Record, RecordOutcome
from streams.ops.erase import read_erasures
from streams.store.state import RedisState
from streams.worker.processor import BatchProcessor


@dataclass
class Progress:
    """Where a rebuild stands: records folded, and per partition (position, end)."""

    records: int = 0
    started: float = field(default_factory=time.monotonic)
    positions: dict[str, tuple[int, int | None]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Records per second so far."""
        return self.records / max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        """One progress line: totals and every partition not yet at its end."""
        todo = [
            f"{tp} {pos}/{'?' if end is None else end}"
            for tp, (pos, end) in sorted(self.positions.items())
            if end is None or pos < end
        ]
        done = len(self.positions) - len(todo)
        return (
            f"{self.records} records, {self.rate:.0f}/s, {done}/{len(self.positions)} "
            f"partitions done" + (f"; {', '.join(todo)}" if todo else "")
        )


async def _no_dead_letters(outcomes: Sequence[RecordOutcome]) -> None:
    """Dead letters were sent by the live run; a rebuild only folds."""


async def rebuild(
    bootstrap: str,
    state: RedisState,
    topics: Sequence[str],
    batch_max: int = 2000,
    report: Callable[[Progress], None] | None = None,
    report_every: float = 2.0,
    kafka: dict[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Progress:
    """Fold every record of ``topics`` (up to their ends at the start) into ``state``.

    ``kafka``: the clients' security arguments (``streams.kafka.security``);
    ``limits``: the fold's definition, the workers' (``Settings.fold_limits``).
    """
    await state.restore_erasures(await read_erasures(bootstrap, kafka=kafka))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(kafka or {}),
    )
    await consumer.start()
    processor = BatchProcessor(state, _no_dead_letters, limits)
    progress = Progress()
    try:
        await consumer.topics()  # a metadata round trip, so partitions_for_topic answers
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = {}
        last_report = time.monotonic()
        while True:
            fetched = await consumer.getmany(timeout_ms=500, max_records=batch_max)
            records: list[Record] = []
            for tp in tps:
                if tp not in ends and consumer.highwater(tp) is not None:
                    ends[tp] = int(consumer.highwater(tp))
                end = ends.get(tp)
                for m in fetched.get(tp, ()):
                    if end is not None and m.offset >= end:
                        break  # written after the rebuild started: the workers' business
                    records.append(kafka_record(m))
            if records:
                await processor.process(records)
                progress.records += len(records)
            done = True
            for tp in tps:
                pos = await consumer.position(tp)
                end = ends.get(tp)
                progress.positions[f"{tp.topic}:{tp.partition}"] = (
                    pos if end is None else min(pos, end),
                    end,
                )
                if end is None or pos < end:
                    done = False
                elif tp not in consumer.paused():
                    consumer.pause(tp)
            if report is not None and time.monotonic() - last_report >= report_every:
                report(progress)
                last_report = time.monotonic()
            if done:
                return progress
    finally:
        await consumer.stop()


async def wipe(redis: Redis, prefix: str) -> int:
    """Delete a prefix's folded state; return the count of keys deleted.

    Sessions, aliases, links, journeys, abandonment timers, applied offsets and
    fingerprints go, and the KPI counters the fold recounts. Erasures stay: they
    keep the next fold from restoring erased sessions. So do the abandonment
    counts (a sweep's, not the log's) and the outbox (notifications not yet sent).
    """
    deleted = 0
    kpis = f"{prefix}:k"
    fields = [f.decode() if isinstance(f, bytes) else f for f in await redis.hkeys(kpis)]
    recounted = [f for f in fields if not f.startswith("abandoned")]
    if recounted:
        await redis.hdel(kpis, *recounted)
    for pattern in (
        f"{prefix}:s:*",
        f"{prefix}:a:*",
        f"{prefix}:l:*",
        f"{prefix}:j:*",
        f"{prefix}:dv:*",
    ):
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await redis.unlink(*batch)
                batch = []
        if batch:
            deleted += await redis.unlink(*batch)
    deleted += await redis.unlink(f"{prefix}:o", f"{prefix}:f", f"{prefix}:ot", f"{prefix}:ab")
    return deleted


def kafka_record(msg: Any) -> Record:
    """A Record from aiokafka's (untyped) ConsumerRecord; a timestamp of -1 means none."""
    ts = int(msg.timestamp) if msg.timestamp is not None and msg.timestamp >= 0 else None
    return Record(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        timestamp_ms=ts,
        replayed_from=replayed_from(getattr(msg, "headers", None)),
    )
