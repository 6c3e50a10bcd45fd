"""Reading ``events-dlq`` and its repair ledger, publishing repairs. Thin edge.

Reads use a plain consumer (manual assignment, no consumer group: nothing is
committed, running workers are not disturbed) and stop at the end each
partition had when the read began: the fetch high watermark of its first
fetch answer, not ListOffsets, which the embedded broker answers wrongly.

Replays are published like ``continuity produce`` publishes (acks=all, the
contract topic, the customer key), with the ``continuity.replayed-from``
header. The ledger record of a replay is written only after the broker has
the replayed record, so the ledger never claims a replay that did not happen;
a crash in between leaves the dead letter pending, and replaying it again is
a duplicate for the fold (same ``event_id``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import DEAD_LETTERS
from streams.core.dlq_repair import (
    REPAIRS,
    Action,
    DeadLetter,
    Position,
    Repair,
    RepairLine,
    State,
    dead_letter,
    latest,
    load_repair,
    replay_headers,
)

_TOPIC_ALREADY_EXISTS = 36


class DlqError(RuntimeError):
    """A read or write of the DLQ tools could not be completed."""


@dataclass
class ReadProgress:
    """How far a read to the end of a topic has come."""

    topic: str
    records: int = 0
    # Records between the start positions and the ends, once every end is known.
    total: int | None = None
    partitions: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        """One progress line."""
        of = f"/{self.total}" if self.total is not None else ""
        return (
            f"{self.topic}: {self.records}{of} records read, "
            f"{self.done}/{self.partitions} partitions at their end, "
            f"{time.monotonic() - self.started:.0f}s"
        )


async def read_to_end(
    bootstrap: str,
    topic: str,
    *,
    kafka: Mapping[str, Any] | None = None,
    start: Mapping[int, int] | None = None,
    stop: Mapping[int, int] | None = None,
    progress: Callable[[ReadProgress], None] | None = None,
    report_every: float = 1.0,
    stall_timeout: float = 30.0,
) -> list[Any]:
    """The records of ``topic`` up to each partition's end at the start of the read.

    ``start``: partition -> first offset (others from the beginning). ``stop``:
    read only these partitions, each up to and including that offset. Returns
    aiokafka ``ConsumerRecord``s in (partition, offset) order; an absent topic
    has none. Raises ``DlqError`` when the broker stops answering.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(kafka or {}),
    )
    await consumer.start()
    try:
        await consumer.topics()  # a metadata round trip, so partitions_for_topic answers
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if stop is not None:
            parts = [p for p in parts if p in stop]
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return []
        consumer.assign(tps)
        for tp in tps:
            if start and tp.partition in start:
                consumer.seek(tp, start[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        first = {tp: await consumer.position(tp) for tp in tps}
        ends: dict[TopicPartition, int] = {}
        done: set[TopicPartition] = set()
        records: list[Any] = []
        state = ReadProgress(topic, partitions=len(tps))
        last_report = time.monotonic()
        stall_deadline = time.monotonic() + stall_timeout
        while len(done) < len(tps):
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp in tps:
                mark = consumer.highwater(tp)
                if tp not in ends and mark is not None:
                    ends[tp] = int(mark)
                    if stop is not None:
                        ends[tp] = min(ends[tp], stop[tp.partition] + 1)
            for tp, messages in batch.items():
                end = ends.get(tp)
                kept = [m for m in messages if end is None or m.offset < end]
                records.extend(kept)
                state.records += len(kept)
            if batch:
                stall_deadline = time.monotonic() + stall_timeout
            for tp in tps:
                if tp in ends and tp not in done and await consumer.position(tp) >= ends[tp]:
                    done.add(tp)
                    consumer.pause(tp)
            state.done = len(done)
            if len(ends) == len(tps):
                state.total = sum(max(ends[tp] - first[tp], 0) for tp in tps)
            if progress is not None and time.monotonic() - last_report >= report_every:
                progress(state)
                last_report = time.monotonic()
            if time.monotonic() > stall_deadline:
                raise DlqError(
                    f"{topic}: no answer from {len(tps) - len(done)} partitions "
                    f"for {stall_timeout:.0f}s ({state.line()})"
                )
        if progress is not None and state.records >= 1000:
            progress(state)
        records.sort(key=lambda m: (m.partition, m.offset))
        return records
    finally:
        await consumer.stop()


def _letter(m: Any) -> DeadLetter:
    return dead_letter(m.partition, m.offset, m.timestamp, m.key, m.value, m.headers)


async def read_letters(
    bootstrap: str,
    *,
    kafka: Mapping[str, Any] | None = None,
    progress: Callable[[ReadProgress], None] | None = None,
) -> list[DeadLetter]:
    """Every dead letter in ``events-dlq`` up to its current end."""
    records = await read_to_end(bootstrap, DEAD_LETTERS, kafka=kafka, progress=progress)
    return [_letter(m) for m in records]


async def read_letters_at(
    bootstrap: str,
    positions: Collection[Position],
    *,
    kafka: Mapping[str, Any] | None = None,
) -> dict[Position, DeadLetter]:
    """The dead letters at ``positions``; a position with no record is absent."""
    if not positions:
        return {}
    start: dict[int, int] = {}
    stop: dict[int, int] = {}
    for pos in positions:
        start[pos.partition] = min(start.get(pos.partition, pos.offset), pos.offset)
        stop[pos.partition] = max(stop.get(pos.partition, pos.offset), pos.offset)
    records = await read_to_end(bootstrap, DEAD_LETTERS, kafka=kafka, start=start, stop=stop)
    wanted = set(positions)
    found = (_letter(m) for m in records)
    return {d.position: d for d in found if d.position in wanted}


async def read_ledger(
    bootstrap: str, *, kafka: Mapping[str, Any] | None = None
) -> dict[str, Repair]:
    """Identity -> the newest repair recorded in ``events-dlq-repairs`` (none if absent)."""
    repairs: list[Repair] = []
    for m in await read_to_end(bootstrap, REPAIRS, kafka=kafka):
        if m.value is None:
            continue  # a tombstone: compaction's way of forgetting a key
        try:
            repairs.append(load_repair(m.value))
        except ValueError:
            continue  # not written by these tools; the ledger is advisory for them
    return latest(repairs)


async def ensure_ledger(bootstrap: str, *, kafka: Mapping[str, Any] | None = None) -> None:
    """Create ``events-dlq-repairs`` (compacted, one partition) when it is missing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(kafka or {}))
    await admin.start()
    try:
        if REPAIRS in set(await admin.list_topics()):
            return
        response = await admin.create_topics(
            [NewTopic(REPAIRS, 1, 1, topic_configs={"cleanup.policy": "compact"})]
        )
        for error in getattr(response, "topic_errors", []):
            if error[1] not in (0, _TOPIC_ALREADY_EXISTS):
                raise DlqError(f"cannot create {REPAIRS}: {error[2:]} (code {error[1]})")
    finally:
        await admin.close()


@dataclass(frozen=True)
class Published:
    """A replayed line and where the broker put it."""

    line: RepairLine
    topic: str
    partition: int
    offset: int

    @property
    def where(self) -> str:
        """``topic:partition@offset`` of the replayed record."""
        return f"{self.topic}:{self.partition}@{self.offset}"


async def apply_repairs(
    bootstrap: str,
    lines: Sequence[RepairLine],
    letters: Mapping[Position, DeadLetter],
    *,
    kafka: Mapping[str, Any] | None = None,
    now_ms: int | None = None,
) -> tuple[list[Published], list[Repair]]:
    """Publish the replay lines in order, then record every line in the ledger.

    Every line's position must be in ``letters``. Returns what was published
    and the ledger records written.
    """
    await ensure_ledger(bootstrap, kafka=kafka)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        # The embedded broker refuses idempotence; the fold dedups by event_id anyway.
        enable_idempotence=False,
        linger_ms=5,
        **(kafka or {}),
    )
    await producer.start()
    try:
        futures = []
        replays = [ln for ln in lines if ln.action is Action.REPLAY and ln.outgoing is not None]
        for ln in replays:
            out = ln.outgoing
            assert out is not None
            futures.append(
                await producer.send(
                    out.topic, out.value, key=out.key, headers=replay_headers(ln.dlq)
                )
            )
        metadata = await asyncio.gather(*futures)
        published = [
            Published(ln, md.topic, md.partition, md.offset)
            for ln, md in zip(replays, metadata, strict=True)
        ]
        at = now_ms if now_ms is not None else int(time.time() * 1000)
        where = {p.line.dlq: p.where for p in published}
        repairs = [
            Repair(
                identity=letters[ln.dlq].identity,
                dlq=str(ln.dlq),
                state=State.REPLAYED if ln.action is Action.REPLAY else State.DROPPED,
                at_ms=at,
                event_id=ln.event_id,
                published_to=where.get(ln.dlq),
                note=ln.note,
            )
            for ln in lines
        ]
        acks = [await producer.send(REPAIRS, r.dumps(), key=r.identity.encode()) for r in repairs]
        await asyncio.gather(*acks)
        return published, repairs
    finally:
        await producer.stop()
