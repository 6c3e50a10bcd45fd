"""Read the retained topics up to a moment and refold one session. Thin I/O shell.

Around the pure ``streams/core/time_travel.py``: a plain consumer (manual
assignment, no group, so workers are not disturbed) reads every partition of
the source topics from its beginning and stops each one at its first record
stamped after the moment, or at the end it had at its first fetch (the fetch
high watermark, as ``continuity rebuild`` does). The moment is never in the
future (callers refuse that), so with LogAppendTime no record appended later
can belong to it.

Pre-filter: only records that may touch the customer are kept and folded.
Their ids come from Redis as it is now: the id, the key it resolves to, every
guest id ever linked to that key (``P:l:{key}`` and the session's
``anonymous_ids``) and the ids of an erasure naming either. A guest that
signed in after the moment is among them and is folded as the guest it still
was then. When the id resolved at the moment to a key outside that set (a
guest that signed in to another customer first), the read is repeated with
that key's ids added; after two misses every record is folded. The filter relies on
Redis knowing every link; after a loss of Redis (before a rebuild) fold
everything (``prefilter=False``).

Erasures come from the compacted ``session-erasures`` topic and from Redis;
whatever any of them covers is skipped, whatever the moment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.topics import SOURCE_TOPICS
from streams.core.erasure import Erasure
from streams.core.fold import DEFAULT_LIMITS, Limits
from streams.core.plan import Record
from streams.core.time_travel import (
    AsOf,
    PartitionCut,
    Replay,
    answer,
    erasures_by_id,
    merged,
    relevant,
)
from streams.ops.erase import EraseError, read_erasures
from streams.ops.rebuild import kafka_record
from streams.store.state import RedisState

# Records folded between two yields to the event loop: a gateway keeps serving
# other requests (and its timeout can fire) while it refolds.
FOLD_CHUNK = 256
_TIMESTAMP_TYPES = {0: "create_time", 1: "log_append_time"}
# Filtered reads before one that folds every record (module docstring).
FILTERED_ROUNDS = 2


class TimeTravelError(RuntimeError):
    """The log could not be read (no topics, erasures unreadable); nothing was answered."""


@dataclass
class ReadProgress:
    """How far a read has come: records read and kept, partitions finished."""

    read: int = 0
    kept: int = 0
    partitions: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        """One progress line."""
        rate = self.read / max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.read} records read ({self.kept} kept), {rate:.0f}/s, "
            f"{self.done}/{self.partitions} partitions at the moment or their end"
        )


@dataclass(frozen=True)
class Reading:
    """What a read up to a moment found."""

    partitions: dict[str, list[Record]]  # tp -> kept records, offset order
    upto: dict[str, int]  # tp -> first offset not part of the moment
    read: int
    record_time: str  # log_append_time, create_time, mixed or none


@dataclass(frozen=True)
class TimeTravel:
    """The answer: the refolded session and how it was obtained."""

    result: AsOf
    reading: Reading

    def as_of(self) -> dict[str, object]:
        """The ``as_of`` object of the answer."""
        r = self.reading
        return self.result.describe(r.upto, r.read, r.record_time)

    def body(self) -> dict[str, object] | None:
        """The public session with its ``as_of`` object, or None if there was no session."""
        if self.result.session is None:
            return None
        return {**self.result.session.public(), "as_of": self.as_of()}


async def interested_ids(state: RedisState, some_id: str) -> frozenset[str]:
    """The ids whose records may make up ``some_id``'s session (module docstring)."""
    key = await state.resolve(some_id)
    ids = {some_id, key, *await state.linked_ids(key)}
    for erasure in await redis_erasures(state, (some_id, key)):
        ids.update(erasure.ids)
    return frozenset(ids)


async def redis_erasures(state: RedisState, ids: Sequence[str]) -> list[Erasure]:
    """The erasures Redis recorded for ``ids`` (log ends as the workers had applied them)."""
    found = [await state.erasure(i) for i in dict.fromkeys(ids)]
    return [e for e in found if e is not None]


async def read_until(
    bootstrap: str,
    moment_ms: int,
    keep: Callable[[Record], bool] | None = None,
    topics: Sequence[str] = SOURCE_TOPICS,
    kafka: dict[str, Any] | None = None,
    report: Callable[[ReadProgress], None] | None = None,
    report_every: float = 2.0,
    fetch_max: int = 2000,
) -> Reading:
    """Every record of ``topics`` up to ``moment_ms``, those ``keep`` accepts kept."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(kafka or {}),
    )
    await consumer.start()
    progress = ReadProgress()
    try:
        await consumer.topics()  # a metadata round trip, so partitions_for_topic answers
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        if not tps:
            raise TimeTravelError(f"none of the topics {', '.join(topics)} exists on {bootstrap}")
        progress.partitions = len(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        cuts = {tp: PartitionCut(moment_ms) for tp in tps}
        ends: dict[TopicPartition, int] = {}
        kept: dict[str, list[Record]] = {f"{tp.topic}:{tp.partition}": [] for tp in tps}
        types: set[int] = set()
        finished: set[TopicPartition] = set()
        last_report = time.monotonic()
        while len(finished) < len(tps):
            fetched = await consumer.getmany(timeout_ms=500, max_records=fetch_max)
            for tp in tps:
                if tp not in ends and consumer.highwater(tp) is not None:
                    ends[tp] = int(consumer.highwater(tp))
                end = ends.get(tp)
                messages = [m for m in fetched.get(tp, ()) if end is None or m.offset < end]
                taken = cuts[tp].take(kafka_record(m) for m in messages)
                types.update(m.timestamp_type for m in messages[: len(taken)])
                progress.read += len(taken)
                mine = [r for r in taken if keep is None or keep(r)]
                progress.kept += len(mine)
                kept[f"{tp.topic}:{tp.partition}"].extend(mine)
                if tp not in finished and (
                    cuts[tp].done or (end is not None and await consumer.position(tp) >= end)
                ):
                    finished.add(tp)
                    consumer.pause(tp)
            progress.done = len(finished)
            if report is not None and time.monotonic() - last_report >= report_every:
                report(progress)
                last_report = time.monotonic()
        upto = {
            f"{tp.topic}:{tp.partition}": cuts[tp].next_offset if cuts[tp].done else ends[tp]
            for tp in tps
        }
        return Reading(kept, upto, progress.read, _record_time(types))
    finally:
        await consumer.stop()
        if report is not None:
            report(progress)


async def session_as_of(
    bootstrap: str,
    state: RedisState,
    some_id: str,
    moment_ms: int,
    limits: Limits = DEFAULT_LIMITS,
    kafka: dict[str, Any] | None = None,
    prefilter: bool = True,
    report: Callable[[ReadProgress], None] | None = None,
    report_every: float = 2.0,
) -> TimeTravel:
    """The session of ``some_id`` as it was at ``moment_ms``, refolded from the topics.

    ``limits``: the fold's definition, the workers' (``Settings.fold_limits``).
    Raises ``TimeTravelError`` when the log cannot be read; Redis and Kafka
    client errors pass through.
    """
    ids = await interested_ids(state, some_id)
    try:
        logged = await read_erasures(bootstrap, kafka=kafka)
    except EraseError as exc:
        raise TimeTravelError(str(exc)) from None
    rounds = FILTERED_ROUNDS if prefilter else 0
    while True:
        local = await redis_erasures(state, sorted(ids))
        reading = await read_until(
            bootstrap,
            moment_ms,
            keep=partial(relevant, ids=ids) if rounds > 0 else None,
            kafka=kafka,
            report=report,
            report_every=report_every,
        )
        replay = Replay(erasures_by_id([*logged, *local]), limits)
        await _fold(replay, reading)
        result = answer(replay, some_id, moment_ms)
        if rounds <= 0 or result.key in ids:
            return TimeTravel(result, reading)
        # Then the id belonged to a key whose own records were filtered out.
        ids = ids | await interested_ids(state, result.key)
        rounds -= 1


async def _fold(replay: Replay, reading: Reading) -> None:
    """Fold what was read in the merged order, yielding to the event loop now and then."""
    chunk: list[Record] = []
    for record in merged(reading.partitions):
        chunk.append(record)
        if len(chunk) >= FOLD_CHUNK:
            replay.fold(chunk)
            chunk = []
            await asyncio.sleep(0)
    if chunk:
        replay.fold(chunk)


def _record_time(types: set[int]) -> str:
    if not types:
        return "none"
    names = {_TIMESTAMP_TYPES.get(t, "unknown") for t in types}
    return names.pop() if len(names) == 1 else "mixed"
