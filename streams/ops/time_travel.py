"""Read the retained topics up to a moment and refold one session. Thin I/O shell.

Around the pure ``streams/core/time_travel.py``: the bounded reader
(``streams/kafka/reader.py``: no group, so workers are not disturbed) reads
every partition of the source topics from its beginning and stops each one at
its first record stamped after the moment, or at the end it had at its first
fetch (the fetch high watermark, as ``continuity rebuild`` does). The moment
is never in the future (callers refuse that), so with LogAppendTime no record
appended later can belong to it.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import groupby
from typing import Any

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
from streams.kafka.progress import ReadProgress
from streams.kafka.reader import TopicReader
from streams.kafka.records import from_kafka
from streams.ops.erase import read_erasures
from streams.store.state import RedisState

# Records folded between two yields to the event loop: a gateway keeps serving
# other requests (and its timeout can fire) while it refolds.
FOLD_CHUNK = 256
_TIMESTAMP_TYPES = {0: "create_time", 1: "log_append_time"}
# Filtered reads before one that folds every record (module docstring).
FILTERED_ROUNDS = 2


# The gateway's route still catches this name; it is the reader's one error.


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
    """Every record of ``topics`` up to ``moment_ms``, those ``keep`` accepts kept.

    Raises ``LogUnreadable`` when no topic exists or the broker stops answering.
    """
    reader = TopicReader(
        bootstrap,
        topics,
        batch_max=fetch_max,
        job="time-travel",
        kafka=kafka,
        report=report,
        report_every=report_every,
    )
    reader.progress.kept = 0
    try:
        async with reader:
            cuts = {(tp.topic, tp.partition): PartitionCut(moment_ms) for tp in reader.partitions}
            kept: dict[str, list[Record]] = {f"{t}:{p}": [] for t, p in cuts}
            types: set[int] = set()
            read = 0
            async for batch in reader:
                # A batch holds each partition's records together, in offset order.
                for (topic, partition), group in groupby(batch, lambda m: (m.topic, m.partition)):
                    messages = list(group)
                    cut = cuts[(topic, partition)]
                    taken = cut.take(from_kafka(m) for m in messages)
                    types.update(m.timestamp_type for m in messages[: len(taken)])
                    read += len(taken)
                    mine = [r for r in taken if keep is None or keep(r)]
                    reader.progress.kept += len(mine)
                    kept[f"{topic}:{partition}"].extend(mine)
                    if cut.done:
                        reader.finish((topic, partition))
        upto = {
            f"{t}:{p}": cut.next_offset if cut.done else reader.ends[f"{t}:{p}"]
            for (t, p), cut in cuts.items()
        }
        return Reading(kept, upto, read, _record_time(types))
    finally:
        if report is not None:
            report(reader.progress)


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
    Raises ``LogUnreadable`` when the log cannot be read; Redis errors pass through.
    """
    ids = await interested_ids(state, some_id)
    logged = await read_erasures(bootstrap, kafka=kafka)
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
