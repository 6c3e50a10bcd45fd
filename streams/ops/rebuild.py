"""Recompute every session from the retained topics into Redis. Thin edge.

The bounded reader (``streams/kafka/reader.py``: no consumer group, so
running workers are not disturbed) reads every partition of the source
topics from its beginning to the end it had when the rebuild started (the
fetch high watermark of its first fetch). Batches are planned by the same pure planner and
committed by the same ``RedisState.commit`` as the workers', into the target
prefix, applied offsets and fingerprints included; so workers pointed at the
rebuilt prefix carry on from where it ends. Records are not dead-lettered
again (the live run did that once already).

Erasures are restored from the ``session-erasures`` topic before the first
batch, so no record an erasure covers is ever folded, even into a Redis
that lost everything (``streams/core/erasure.py``). The fold does the work
of every forward on ``session-forwards`` itself, so the prefix then takes
that topic's positions as applied (``streams/ops/forward_positions.py``).
With ``forward`` (the workers' ``CONTINUITY_CROSS_PARTITION=forward``, and the only
way on a Redis Cluster) each partition's batch commits its own keys only, and
the forwards those commits write are delivered in-process after every batch
(``streams/ops/inline_forwards.py``), so a login's merge is done, and no session
waits for one, before the next batch is read.

Arrival order across topics is the consumer's, not the live run's, so the
fields that depend on it may differ from the live state (README: Rebuild).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster

from streams.core.fold import DEFAULT_LIMITS, Limits
from streams.core.plan import RecordOutcome
from streams.kafka.progress import ReadProgress
from streams.kafka.reader import TopicReader
from streams.kafka.records import from_kafka
from streams.ops.erase import read_erasures
from streams.ops.forward_positions import skip_forwards
from streams.ops.inline_forwards import InlineForwards, clear_positions
from streams.store import keys
from streams.store.keys import Space
from streams.store.state import RedisState
from streams.worker.processor import BatchProcessor


async def no_dead_letters(outcomes: Sequence[RecordOutcome]) -> None:
    """Dead letters were sent by the live run; a rebuild only folds."""


async def rebuild(
    bootstrap: str,
    state: RedisState,
    topics: Sequence[str],
    batch_max: int = 2000,
    report: Callable[[ReadProgress], None] | None = None,
    report_every: float = 2.0,
    kafka: dict[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    forward: bool = False,
) -> Rebuilt:
    """Fold every record of ``topics`` (up to their ends at the start) into ``state``.

    ``kafka``: the clients' security arguments (``streams.kafka.security``);
    ``limits``: the fold's definition, the workers' (``Settings.fold_limits``);
    ``forward``: plan per partition and deliver the forwards in-process, as above.
    Raises ``LogUnreadable`` when a topic cannot be read to its end (a broker
    silent for the reader's stall timeout); what was folded stays in the prefix.
    """
    await state.restore_erasures(await read_erasures(bootstrap, kafka=kafka))
    processor = BatchProcessor(state, no_dead_letters, limits, forward=forward)
    forwards = InlineForwards(state.redis, state.space, processor)
    reader = TopicReader(
        bootstrap,
        topics,
        batch_max=batch_max,
        job="rebuild",
        kafka=kafka,
        report=report,
        report_every=report_every,
    )
    async with reader:
        async for batch in reader:
            await processor.process([from_kafka(m) for m in batch])
            if forward:
                await forwards.drain()
    if forward:
        await clear_positions(state.redis, state.space)
    # The fold did the forwards' work: workers on this prefix go on after them.
    await skip_forwards(bootstrap, state, kafka)
    return Rebuilt(reader.progress, forwards.delivered)


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild folded."""

    progress: ReadProgress
    """The source records read."""
    forwards: int
    """Forwards its own commits wrote and it delivered in-process (``forward`` only)."""


class LivePrefix(ValueError):
    """A rebuild was pointed at the live prefix without saying so (``--into-live``)."""


class PrefixInUse(RuntimeError):
    """The target prefix already holds folded state; a rebuild never writes over it."""


def target_prefix(live: str, requested: str | None, *, into_live: bool, now: float) -> str:
    """Where a rebuild writes: the live prefix (``into_live``, workers stopped), the
    prefix asked for, or ``<live>-rebuild-<UTC time>``, a fresh one beside the live.

    Raises ``LivePrefix`` for the live prefix asked for by name: wiping what the
    workers serve takes the explicit flag, which also checks that none runs.
    """
    if into_live:
        return live
    prefix = requested or f"{live}-rebuild-{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}"
    if prefix == live:
        raise LivePrefix(prefix)
    return prefix


async def ensure_fresh(redis: Redis | RedisCluster, space: Space) -> None:
    """Raise ``PrefixInUse`` if ``space`` holds applied offsets (a fold has written there)."""
    if await redis.exists(*(keys.offsets(space, n) for n in space.all_partitions())):
        raise PrefixInUse(space.prefix)


async def wipe(redis: Redis | RedisCluster, space: Space) -> int:
    """Delete a prefix's folded state, in every partition; return the count of keys deleted.

    Sessions, aliases, links, journeys, abandonment timers, applied offsets and
    fingerprints go, and the KPI counters the fold recounts; so does the work in
    flight between partitions (waiting sessions, forwards not yet sent, the last
    forward applied per origin), which the fold does anew. Erasures stay: they
    keep the next fold from restoring erased sessions. So do the abandonment
    counts (a sweep's, not the log's) and the outbox (notifications not yet sent).
    """
    deleted = 0
    for n in space.all_partitions():
        kpis = keys.kpis(space, n)
        fields = [f.decode() if isinstance(f, bytes) else f for f in await redis.hkeys(kpis)]
        recounted = [f for f in fields if not f.startswith("abandoned")]
        if recounted:
            await redis.hdel(kpis, *recounted)
    families = (keys.SESSION, keys.ALIAS, keys.LINKS, keys.JOURNEY, keys.DEVICES)
    # Version floors too: a re-fold derives every version from the log again.
    for family in (*families, keys.VERSION_FLOOR):
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=family.glob(space.prefix), count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await _unlink(redis, batch)
                batch = []
        deleted += await _unlink(redis, batch)
    for n in space.all_partitions():
        deleted += await redis.unlink(
            keys.offsets(space, n),
            keys.fingerprints(space, n),
            keys.offset_times(space, n),
            keys.abandonment(space, n),
            keys.waiting(space, n),
            keys.forwards(space, n),
            keys.forwards_cursor(space, n),
            keys.forwards_seen(space, n),
        )
    return deleted


async def _unlink(redis: Redis | RedisCluster, names: list[bytes]) -> int:
    """UNLINK ``names`` one partition tag at a time: a multi-key command must stay in
    one slot on Redis Cluster."""
    by_tag: dict[bytes, list[bytes]] = {}
    for name in names:
        by_tag.setdefault(name.split(b":", 2)[1], []).append(name)
    deleted = 0
    for group in by_tag.values():
        deleted += await redis.unlink(*group)
    return deleted
