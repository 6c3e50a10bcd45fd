"""Reading ``events-dlq`` and its repair ledger, publishing repairs. Thin edge.

Reads use the bounded reader (``streams/kafka/reader.py``: no consumer group,
nothing is committed, running workers are not disturbed) and stop at the end
each partition had when the read began: the fetch high watermark of its
first fetch answer, not ListOffsets, which the embedded broker answers wrongly.

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
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import NewTopic

from schemas.dead_letter import DeadLetterReference
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
from streams.kafka import clients
from streams.kafka.progress import ReadProgress
from streams.kafka.reader import Message, TopicReader, read_all

_TOPIC_ALREADY_EXISTS = 36


class DlqError(RuntimeError):
    """The ledger topic could not be created (reads raise ``LogUnreadable``)."""


def _letter(m: Message) -> DeadLetter:
    return dead_letter(m.partition, m.offset, m.timestamp, m.key, m.value, m.headers)


async def read_letters(
    bootstrap: str,
    *,
    kafka: Mapping[str, Any] | None = None,
    progress: Callable[[ReadProgress], None] | None = None,
) -> list[DeadLetter]:
    """Every dead letter in ``events-dlq`` up to its end when the read began.

    Raises ``LogUnreadable`` when the broker stops answering.
    """
    reader = TopicReader(
        bootstrap,
        [DEAD_LETTERS],
        missing_ok=True,
        job="dlq",
        kafka=kafka,
        report=progress,
        report_every=1.0,
    )
    async with reader:
        records = [m async for batch in reader for m in batch]
    # A read long enough to be worth watching also says where it ended.
    if progress is not None and reader.progress.records >= 1000:
        progress(reader.progress)
    records.sort(key=lambda m: (m.partition, m.offset))
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
    # Each partition read from its lowest wanted offset through its highest only.
    start: dict[tuple[str, int], int] = {}
    until: dict[tuple[str, int], int] = {}
    for pos in positions:
        tp = (DEAD_LETTERS, pos.partition)
        start[tp] = min(start.get(tp, pos.offset), pos.offset)
        until[tp] = max(until.get(tp, pos.offset + 1), pos.offset + 1)
    records = await read_all(
        bootstrap,
        [DEAD_LETTERS],
        partitions=until,
        start=start,
        until=until,
        missing_ok=True,
        job="dlq",
        kafka=kafka,
    )
    wanted = set(positions)
    found = (_letter(m) for m in records)
    return {d.position: d for d in found if d.position in wanted}


async def read_source(
    bootstrap: str, ref: DeadLetterReference, *, kafka: Mapping[str, Any] | None = None
) -> Message | None:
    """The record a reference dead letter names, read by its position; None once the
    topic's retention (or a log reset) removed it."""
    tp = (ref.topic, ref.partition)
    records = await read_all(
        bootstrap,
        [ref.topic],
        partitions={tp: ref.offset + 1},
        start={tp: ref.offset},
        until={tp: ref.offset + 1},
        missing_ok=True,
        job="dlq",
        kafka=kafka,
        # Room for the one record, however large it was (it is why it was not copied).
        max_partition_fetch_bytes=max(1 << 20, ref.size + (1 << 16)),
        fetch_max_bytes=max(50 << 20, ref.size + (1 << 16)),
    )
    return next((m for m in records if m.offset == ref.offset), None)


async def read_ledger(
    bootstrap: str, *, kafka: Mapping[str, Any] | None = None
) -> dict[str, Repair]:
    """Identity -> the newest repair recorded in ``events-dlq-repairs`` (none if absent)."""
    repairs: list[Repair] = []
    for m in await read_all(bootstrap, [REPAIRS], missing_ok=True, job="dlq", kafka=kafka):
        if m.value is None:
            continue  # a tombstone: compaction's way of forgetting a key
        try:
            repairs.append(load_repair(m.value))
        except ValueError:
            continue  # not written by these tools; the ledger is advisory for them
    return latest(repairs)


async def ensure_ledger(bootstrap: str, *, kafka: Mapping[str, Any] | None = None) -> None:
    """Create ``events-dlq-repairs`` (compacted, one partition) when it is missing."""
    admin = clients.admin(bootstrap, "dlq", kafka=kafka)
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
    producer = clients.producer(bootstrap, "dlq", kafka=kafka, linger_ms=5)
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
