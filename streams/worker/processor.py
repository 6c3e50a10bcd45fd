"""The worker's batch step, and the one place the commit order is written down.

How one fetched batch becomes state, exactly once (``BatchProcessor.process``):

1. **Decode** every record (``streams/core/decode.py``); a record that is no
   valid event is kept, to be dead-lettered in step 4. A ``session-forwards``
   record is no event and is not decoded (the seam near the end of this module).
2. **Read** the state the batch needs in one round trip: sessions, aliases,
   link sets and the applied offsets of its partitions
   (``RedisState.load``). Redis's applied offsets are checked against the
   worker's floors (``streams/core/positions.py``): a partition Redis has
   rolled back on is handed to the rewinder (``streams/worker/rewind.py``),
   which seeks it back to Redis's own position, and the batch goes on without it.
3. **Plan** the batch against that snapshot (``streams/core/plan.py``, pure):
   records at or below a partition's applied offset are skipped, every other
   record is folded (``streams/core/fold.py``) or rejected with a reason.
4. **Dead-letter** the rejected records to ``events-dlq`` and wait for the
   broker. This comes before the commit that marks their offsets applied, so
   a crash in between re-sends them rather than losing them.
5. **Commit** to Redis atomically: states, aliases, the applied offsets and
   their fingerprints, timers, journey and outbox, in one script per partition
   (``RedisState.commit``, ``streams/store/lua/commit.lua``) that first checks
   nothing it read has changed; on a conflict the batch is planned again from
   step 2. Redis errors are retried with capped backoff for as long as it
   takes: the batch is never skipped, so the partition waits in place.
6. **Acknowledge** to Kafka only after that (the agent in
   ``streams/worker/app.py``, ``fetched.ack``). Kafka's committed offsets are
   a hint for where to fetch; Redis's applied offsets are the truth, which is
   why a redelivered record is skipped in step 3 and never applied twice.

Each partition's records go through these steps on their own, concurrently
with the batch's other partitions: everything a partition's commit writes of
its own (offsets, outbox, changelog, KPIs) lives in its own Redis Cluster
slot, so the exactly-once argument is one-slot-atomic. Records of one
partition are planned in offset order. What a batch counts in
the metrics is derived from the committed plan by the pure
``streams/core/facts.py``; this module only times Redis and records the result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from schemas.events import AnyEvent
from schemas.topics import SESSION_FORWARDS
from streams.core.crossing import Placement
from streams.core.decode import decode
from streams.core.facts import (
    RecordId,
    RecordLabels,
    batch_facts,
    labels_by_record,
    outcome_labels,
    record_id,
)
from streams.core.fold import DEFAULT_LIMITS, Limits, Reason, Rejected
from streams.core.plan import Plan, Record, RecordOutcome, joined, needs, plan_batch
from streams.core.positions import Floors, Rewind, rollbacks
from streams.core.readiness import Readiness
from streams.logs import batch_fields, record_fields
from streams.store.client import refusal, transient
from streams.store.state import RedisState
from streams.worker import metrics

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[Sequence[RecordOutcome]], Awaitable[None]]
# Runs before each attempt's read, inside the retry loop (e.g. ``ResetGuard.check``).
BatchGuard = Callable[[Sequence[Record]], Awaitable[None]]
# Seeks rolled-back partitions back to Redis's position (``streams/worker/rewind.py``).
Rewinder = Callable[[Sequence[Rewind]], Awaitable[None]]
T = TypeVar("T")


class BatchProcessor:
    """Folds batches of records into Redis with exactly-once effect."""

    def __init__(
        self,
        state: RedisState,
        dead_letter: DeadLetterSink,
        limits: Limits = DEFAULT_LIMITS,
        retry_max_delay: float = 5.0,
        guard: BatchGuard | None = None,
        readiness: Readiness | None = None,
        floors: Floors | None = None,
        rewind: Rewinder | None = None,
        forward: bool = False,
        any_sender: bool = False,
    ) -> None:
        """``forward``: each partition's commit changes its own keys only, and work for
        another partition goes out as forwards (``docs/merge-across-partitions.md``);
        otherwise one commit may change any key (one Redis primary only).
        ``any_sender``: fold every ``session-forwards`` record, whatever key prefix sent
        it (a restore, which takes the topic's deployment for its own); otherwise
        another prefix's are skipped (a rebuild beside the live state, blue/green)."""
        self.state = state
        self.forward = forward
        self.any_sender = any_sender
        self.dead_letter = dead_letter
        self.limits = limits
        self.retry_max_delay = retry_max_delay
        self.guard = guard
        self.readiness = readiness
        self.floors = floors
        self.rewind = rewind

    def _mark_foreign(self, record: Record) -> Record:
        """``record``, marked when another deployment's relay sent it."""
        if record.sender is None or record.sender == self.state.space.prefix:
            return record
        return replace(record, foreign=True)

    async def process(self, records: Sequence[Record]) -> Plan:
        """Apply ``records`` (in arrival order); return only once they are committed.

        Each partition's records are applied on their own (concurrently): loaded,
        planned and committed against that partition's slot, so a commit is one
        single-slot script (``streams/store/keys.py``). Redis errors are retried
        with capped exponential backoff for as long as it takes: the batch is
        never skipped, so the partition waits in place. The plan returned joins
        the partitions' plans, outcomes in arrival order.
        """
        if not self.any_sender:
            records = [self._mark_foreign(r) for r in records]
        decoded = [_decode(r) for r in records]
        # Counted as received on arrival, before any Redis round trip: a batch
        # waiting out an outage shows up here (a rewind's records count again
        # when they are fetched again).
        labels = labels_by_record(records, decoded)
        metrics.record_received(labels[record_id(r)] for r in records if not _forward(r))
        groups: dict[int, list[tuple[Record, Any]]] = {}
        for r, d in zip(records, decoded, strict=True):
            groups.setdefault(r.partition, []).append((r, d))
        if self.guard is not None and len(groups) > 1:
            # Once for the whole batch (one broker probe for all its new partitions);
            # each partition's own call then finds them verified.
            await self._first_guard(records)
        if len(groups) == 1:
            return await self._process_partition(records, decoded, labels)
        # A task group: one partition's failure (not a Redis outage, which is waited
        # out) cancels the others, so an ops job stops committing when one step fails.
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(
                    self._process_partition([r for r, _ in g], [d for _, d in g], labels)
                )
                for g in groups.values()
            ]
        return joined([t.result() for t in tasks], records)

    async def _first_guard(self, records: Sequence[Record]) -> None:
        """Run the guard over the whole batch, waiting out Redis as a commit would."""
        assert self.guard is not None
        delay = 0.05
        while True:
            try:
                await self.guard(records)
                return
            except Exception as exc:
                delay = await self._wait_out(exc, records, delay)

    async def _wait_out(self, exc: Exception, records: Sequence[Record], delay: float) -> float:
        """Re-raise ``exc`` unless Redis is only unavailable; then count, log and sleep
        ``delay``, and return the next delay (capped exponential backoff)."""
        if not transient(exc):
            raise exc
        metrics.REDIS_UP.set(0)
        metrics.REDIS_RETRIES.inc()
        if self.readiness is not None:
            self.readiness.redis_failed(time.monotonic(), refusal(exc))
        log.warning(
            "redis unavailable (%s); retrying batch in %.2fs",
            type(exc).__name__,
            delay,
            extra=batch_fields(records),
        )
        await asyncio.sleep(delay)
        return min(delay * 2, self.retry_max_delay)

    async def _process_partition(
        self,
        records: Sequence[Record],
        decoded: list[Any],
        labels: Mapping[RecordId, RecordLabels],
    ) -> Plan:
        """Apply one partition's records: load, plan, dead-letter, commit, retried.

        ``labels`` are the whole batch's, computed once (looked up by record only).
        """
        started = time.perf_counter()
        records = list(records)
        partition = records[0].partition
        place = Placement(partition, self.state.space.partitions) if self.forward else None
        need = needs(records, decoded, place)
        delivered: set[tuple[str, int, int]] = set()
        delay = 0.05
        while True:
            try:
                if self.guard is not None:
                    await self.guard(records)
                # Read before the state: a floor raised after the read is no rollback.
                floors = self.floors.of(need.partitions) if self.floors is not None else {}
                snapshot = await _timed("load", self.state.load(need, partition))
                if snapshot.pending:
                    # A merge landing here releases what its session held: read for
                    # those records too (a second round trip, only while one waits).
                    wider = needs(records, decoded, place, snapshot.pending.values())
                    if wider != need:
                        need = wider
                        snapshot = await _timed("load", self.state.load(need, partition))
                rewinds = rollbacks(floors, snapshot.offsets)
                if rewinds:
                    records, decoded = await self._rewind(rewinds, records, decoded)
                    need = needs(records, decoded, place)
                    if not records:
                        return Plan()
                    continue
                plan = plan_batch(records, decoded, snapshot, self.limits, place)
                await self._send_dead_letters(plan, delivered)
                conflict = await _timed(
                    "commit", self.state.commit(plan, time.time(), partition=partition)
                )
            except Exception as exc:
                delay = await self._wait_out(exc, records, delay)
                continue
            metrics.REDIS_UP.set(1)
            if self.readiness is not None:
                self.readiness.redis_ok()
            if conflict is None:
                break
            metrics.COMMIT_CONFLICTS.labels(conflict.what).inc()
            log.info("commit conflict on %s %s; re-planning batch", conflict.what, conflict.name)
        if self.floors is not None:
            for tp, offset in plan.offsets.items():
                self.floors.raise_to(tp, offset)
        metrics.record_batch(batch_facts(plan, snapshot, labels, time.time(), len(records)))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        _log_dead_letters(plan, labels)
        return plan

    async def _rewind(
        self, rewinds: Sequence[Rewind], records: list[Record], decoded: list[Any]
    ) -> tuple[list[Record], list[Any]]:
        """Hand rolled-back partitions to the rewinder; the rest of the batch goes on."""
        if self.rewind is None:
            raise RuntimeError("Redis rolled back, but this processor has no rewinder")
        await self.rewind(rewinds)
        gone = {r.tp for r in rewinds}
        kept = [i for i, r in enumerate(records) if r.tp not in gone]
        return [records[i] for i in kept], [decoded[i] for i in kept]

    async def _send_dead_letters(self, plan: Plan, delivered: set[tuple[str, int, int]]) -> None:
        fresh = [o for o in plan.rejected if record_id(o.record) not in delivered]
        if not fresh:
            return
        await self.dead_letter(fresh)
        delivered.update(record_id(o.record) for o in fresh)


# A forward record (``streams/worker/forward_relay.py``) is no event: it is never
# decoded as one; plan_batch reads it by its topic and ignores this placeholder.
FORWARD_PLACEHOLDER = Rejected(Reason.MALFORMED_JSON, "a session-forwards record, not an event")


def _forward(record: Record) -> bool:
    return record.topic == SESSION_FORWARDS


def _decode(record: Record) -> AnyEvent | Rejected:
    """The record's event (or why it is none); a forward record's placeholder."""
    return FORWARD_PLACEHOLDER if _forward(record) else decode(record.value)


async def _timed(operation: str, call: Awaitable[T]) -> T:
    """Await one Redis round trip, observing its duration and counting its failure."""
    started = time.perf_counter()
    try:
        return await call
    except Exception:
        metrics.REDIS_ERRORS.labels(operation).inc()
        raise
    finally:
        metrics.child(metrics.REDIS_SECONDS, operation).observe(time.perf_counter() - started)


def _log_dead_letters(plan: Plan, labels: Mapping[RecordId, RecordLabels]) -> None:
    for o in plan.rejected:
        reason = o.reason.value if o.reason else "unknown"
        event_id = outcome_labels(o, labels).event_id
        log.warning(
            "dead-lettered %s[%d]@%d event_id=%s: %s (%s)",
            o.record.topic,
            o.record.partition,
            o.record.offset,
            event_id or "-",
            reason,
            o.detail,
            extra=record_fields(o.record, event_id, reason=reason),
        )
