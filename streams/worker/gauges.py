"""The gauges a worker reads rather than counts: consumer lag and sessions active. Thin edge.

Ownership keeps every series in exactly one process. Lag is reported only for
the partitions this worker is assigned, and a partition's series is removed
the moment it is revoked, before its next owner reports it; the window-wide
sessions-active estimate is reported only by the worker assigned partition 0
of the first source topic. Summing a series over all scrape targets therefore
never counts anything twice.

One refresh is one Redis round trip (applied offsets of the owned partitions,
each in its partition's hash, and when this worker reports the sessions
estimate a PFCOUNT per partition, summed: a HyperLogLog's members are session
keys placed by their own partition, so the partitions' counts are disjoint). A failed refresh
leaves the gauges as they were and marks Redis down, which an idle worker
would otherwise never notice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from schemas.topics import SOURCE_TOPICS
from streams.core.activity import WINDOW_LABEL, window
from streams.core.lag import Partition, consumer_lag, offsets_field, owned
from streams.store import keys
from streams.store.client import UNAVAILABLE
from streams.store.state import RedisState
from streams.worker import metrics

log = logging.getLogger(__name__)

SESSIONS_OWNER: Partition = (SOURCE_TOPICS[0], 0)


class GaugeRefresher:
    """Sets and removes this worker's lag and sessions-active series.

    The assignment is tracked from the rebalance callbacks rather than asked
    of the consumer, which still lists revoked partitions while a rebalance
    is under way.
    """

    def __init__(self) -> None:
        self._assigned: set[Partition] = set()
        self._reported: set[Partition] = set()
        self._reports_sessions = False

    def revoked(self, partitions: Iterable[Partition]) -> None:
        """Partitions were taken away: drop their series at once."""
        gone = set(partitions)
        self._assigned -= gone
        self._drop(gone)

    def assigned(self, partitions: Iterable[Partition]) -> None:
        """The complete new assignment: drop every series outside it."""
        self._assigned = set(owned(partitions, SOURCE_TOPICS))
        self._drop(self._reported - self._assigned)
        if SESSIONS_OWNER not in self._assigned:
            self._drop({SESSIONS_OWNER})

    async def refresh(
        self, state: RedisState, highwater: Callable[[Partition], int | None], now: float
    ) -> None:
        """Read the applied offsets (and the sessions estimate) and set the gauges."""
        mine = sorted(self._assigned)
        if not mine:
            return
        counts_sessions = SESSIONS_OWNER in self._assigned
        space = state.space
        pipe = state.redis.pipeline(transaction=False)
        # ``<topic>:N`` is applied in partition N's hash.
        for tp in mine:
            pipe.hget(keys.offsets(space, tp[1]), offsets_field(tp))
        if counts_sessions:
            # Per partition (one slot each); their members are disjoint, so the sum is exact.
            buckets = window(now)
            for n in space.all_partitions():
                # Not ``pipe.pfcount``, which a cluster pipeline refuses by name.
                pipe.execute_command("PFCOUNT", *[keys.activity(space, n, b) for b in buckets])
        started = time.perf_counter()
        try:
            replies = await pipe.execute()
        except UNAVAILABLE as exc:
            metrics.REDIS_ERRORS.labels("refresh").inc()
            metrics.REDIS_UP.set(0)
            log.warning("gauge refresh failed: %s", type(exc).__name__)
            return
        finally:
            metrics.REDIS_SECONDS.labels("refresh").observe(time.perf_counter() - started)
        metrics.REDIS_UP.set(1)
        offsets = replies[: len(mine)]
        applied = {tp: int(v) for tp, v in zip(mine, offsets, strict=True) if v is not None}
        # A rebalance may have run while Redis answered: report only what is still ours.
        lag = consumer_lag({tp: highwater(tp) for tp in mine if tp in self._assigned}, applied)
        for tp, records in lag.items():
            metrics.CONSUMER_LAG.labels(tp[0], str(tp[1])).set(records)
            self._reported.add(tp)
        if counts_sessions and SESSIONS_OWNER in self._assigned:
            active = sum(int(count) for count in replies[len(mine) :])
            metrics.SESSIONS_ACTIVE.labels(WINDOW_LABEL).set(active)
            self._reports_sessions = True

    def _drop(self, partitions: set[Partition]) -> None:
        for tp in partitions & self._reported:
            metrics.CONSUMER_LAG.remove(tp[0], str(tp[1]))
            self._reported.discard(tp)
        if SESSIONS_OWNER in partitions and self._reports_sessions:
            metrics.SESSIONS_ACTIVE.remove(WINDOW_LABEL)
            self._reports_sessions = False
