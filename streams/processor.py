"""The worker's batch step: decode, read, plan, dead-letter, commit. Thin I/O shell.

Ordering guarantee: records of one partition are planned in offset order, and
a batch is committed to Redis (states + applied offsets, atomically) before
the caller acknowledges it to Kafka. Dead letters are delivered before the
commit that marks their offsets applied, so a crash in between re-sends them
rather than losing them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from streams import metrics
from streams.batch import Kind, Plan, Record, RecordOutcome, needs, plan_batch
from streams.decode import decode
from streams.fold import DEFAULT_LIMITS, Limits
from streams.redis_state import RedisState

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[Sequence[RecordOutcome]], Awaitable[None]]
_RETRYABLE = (ConnectionError, TimeoutError, BusyLoadingError, OSError)


class BatchProcessor:
    """Folds batches of records into Redis with exactly-once effect."""

    def __init__(
        self,
        state: RedisState,
        dead_letter: DeadLetterSink,
        limits: Limits = DEFAULT_LIMITS,
        retry_max_delay: float = 5.0,
    ) -> None:
        self.state = state
        self.dead_letter = dead_letter
        self.limits = limits
        self.retry_max_delay = retry_max_delay

    async def process(self, records: Sequence[Record]) -> Plan:
        """Apply ``records`` (in arrival order); return only once they are committed.

        Redis errors are retried with capped exponential backoff for as long as
        it takes: the batch is never skipped, so the partition waits in place.
        """
        started = time.perf_counter()
        decoded = [decode(r.value) for r in records]
        need = needs(records, decoded)
        delivered: set[tuple[str, int, int]] = set()
        delay = 0.05
        while True:
            try:
                snapshot = await self.state.load(need)
                plan = plan_batch(records, decoded, snapshot, self.limits)
                await self._send_dead_letters(plan, delivered)
                conflict = await self.state.commit(plan)
            except _RETRYABLE as exc:
                metrics.REDIS_UP.set(0)
                metrics.REDIS_RETRIES.inc()
                log.warning(
                    "redis unavailable (%s); retrying batch in %.2fs", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)
                continue
            metrics.REDIS_UP.set(1)
            if conflict is None:
                break
            metrics.COMMIT_CONFLICTS.labels(conflict.what).inc()
            log.info("commit conflict on %s %s; re-planning batch", conflict.what, conflict.name)
        self._observe(plan, len(records), time.perf_counter() - started)
        return plan

    async def _send_dead_letters(self, plan: Plan, delivered: set[tuple[str, int, int]]) -> None:
        fresh = [
            o
            for o in plan.rejected
            if (o.record.topic, o.record.partition, o.record.offset) not in delivered
        ]
        if not fresh:
            return
        await self.dead_letter(fresh)
        delivered.update((o.record.topic, o.record.partition, o.record.offset) for o in fresh)

    def _observe(self, plan: Plan, size: int, seconds: float) -> None:
        metrics.BATCH_SIZE.observe(size)
        metrics.BATCH_SECONDS.observe(seconds)
        if plan.dropped_lines:
            metrics.MERGE_DROPPED_LINES.inc(len(plan.dropped_lines))
        for o in plan.outcomes:
            metrics.EVENTS.labels(o.record.topic, o.kind.value).inc()
            if o.kind is Kind.REJECTED and o.reason is not None:
                metrics.DEAD_LETTERS.labels(o.record.topic, o.reason.value).inc()
                log.warning(
                    "dead-lettered %s[%d]@%d: %s (%s)",
                    o.record.topic,
                    o.record.partition,
                    o.record.offset,
                    o.reason.value,
                    o.detail,
                )
