"""Acting on a Redis rollback: count it, restore lost erasures, fold the lost range again. Edge.

``streams/core/positions.py`` decides which partitions Redis has rolled back on;
this module does what follows, in the order that keeps the fold right:

1. log each partition (topic, partition, Redis's applied offset, the floor)
   and count it in ``continuity_redis_rollbacks_total`` (alert
   ``ContinuityRedisRolledBack``);
2. re-apply every erasure on the ``session-erasures`` topic that Redis no
   longer holds (``streams/ops/erase.py``), before anything is folded again, so
   a rolled-back Redis cannot bring an erased customer back;
3. drop each partition's floor to Redis's position and seek the partition
   there (``Rewind.seek_to``: after the applied offset, or the log's start
   when Redis holds none). The records in between are fetched and folded
   again; records fetched before the seek are dropped as stale
   (``Fetched.positioned``).

The check runs on every batch (in the read that loads the state) and on a
timer for every assigned partition (``CONTINUITY_POSITION_CHECK_INTERVAL``),
so a partition with no new events is folded again too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from streams.core.positions import Floors, Rewind, rollbacks
from streams.store.state import RedisState
from streams.worker import metrics

log = logging.getLogger(__name__)

Seek = Callable[[str, int], Awaitable[None]]
# Re-applies the erasures Redis lost; returns how many it re-applied.
RestoreErasures = Callable[[], Awaitable[int]]


class Rewinder:
    """Seeks rolled-back partitions back to Redis's position, once per detection.

    ``lock`` is held by the agent around each batch (filtering the fetch,
    folding, committing, acking) and by the timer's check: a seek can never
    land between a batch's read of the floors and its commit, where the batch
    would fold records of the old position on top of the rolled-back state.
    """

    def __init__(
        self,
        floors: Floors,
        seek: Seek,
        restore_erasures: RestoreErasures | None = None,
        retry_max_delay: float = 5.0,
    ) -> None:
        self.floors = floors
        self.seek = seek
        self.restore_erasures = restore_erasures
        self.retry_max_delay = retry_max_delay
        self.lock = asyncio.Lock()

    async def __call__(self, rewinds: Sequence[Rewind]) -> None:
        """Handle ``rewinds`` found by a batch; the caller holds ``lock``."""
        # The batch path and the timer may both see one rollback: the second
        # finds the floor already dropped and has nothing left to do.
        current = self.floors.of(r.tp for r in rewinds)
        fresh = [r for r in rewinds if current.get(r.tp, -1) >= r.floor]
        if not fresh:
            return
        for r in fresh:
            topic, _, partition = r.tp.rpartition(":")
            metrics.REDIS_ROLLBACKS.labels(topic).inc()
            log.error(
                "redis rolled back on %s[%s]: applied offset %s, but %d was applied; "
                "folding again from offset %d",
                topic,
                partition,
                "none" if r.applied is None else r.applied,
                r.floor,
                r.seek_to,
                extra={
                    "topic": topic,
                    "partition": int(partition),
                    "redis_offset": r.applied,
                    "known_applied_offset": r.floor,
                    "seek_to": r.seek_to,
                },
            )
        if self.restore_erasures is not None:
            restored = await self._restore()
            if restored:
                log.warning("re-applied %d erasures that the rolled-back Redis lost", restored)
        for r in fresh:
            self.floors.rewound(r)
            await self.seek(r.tp, r.seek_to)

    async def check(self, state: RedisState, tps: Iterable[str]) -> None:
        """Compare every partition of ``tps`` with Redis now (the timer's round)."""
        async with self.lock:
            floors = self.floors.of(tps)  # before the read, as the batch path does
            if not floors:
                return
            applied = await state.applied_offsets_of(sorted(floors))
            rewinds = rollbacks(floors, applied)
            if rewinds:
                await self(rewinds)

    async def _restore(self) -> int:
        assert self.restore_erasures is not None
        delay = 0.2
        while True:
            try:
                return await self.restore_erasures()
            except Exception as exc:
                # Folding on before the erasures are back could resurrect an erased
                # customer: wait for the erasure topic (and Redis) instead.
                log.warning("restoring erasures failed (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)
