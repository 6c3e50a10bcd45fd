"""Verify each newly assigned partition's log before folding it. Thin edge.

The first batch that carries records of a partition since it was assigned
waits until that partition's log is judged (``streams/core/log_reset.py``): the
record at the applied offset is fetched and compared with the fingerprint
Redis stored with it. A reset log starts a new epoch: its applied offset is
forgotten (compare-and-delete), so every record of the new log is applied;
producers that re-send events are deduplicated by ``event_id``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka.errors import KafkaError

from streams.core.log_reset import Applied, Probe, Verdict, judge
from streams.core.plan import Record
from streams.kafka.log_probe import probe_logs
from streams.store.state import RedisState
from streams.worker import metrics

log = logging.getLogger(__name__)

Prober = Callable[[Mapping[tuple[str, int], Applied]], Awaitable[dict[tuple[str, int], Probe]]]


class ResetGuard:
    """Remembers which assigned partitions were verified since their assignment."""

    def __init__(self, state: RedisState, prober: Prober, retry_max_delay: float = 5.0) -> None:
        self.state = state
        self.prober = prober
        self.retry_max_delay = retry_max_delay
        self.verified: set[str] = set()
        # Told of each partition reset here: its old positions say nothing any more.
        self.on_reset: Callable[[str], None] | None = None

    @classmethod
    def for_bootstrap(
        cls,
        state: RedisState,
        bootstrap: str,
        retry_max_delay: float,
        kafka: Mapping[str, Any] | None = None,
    ) -> ResetGuard:
        """A guard probing the brokers at ``bootstrap`` (``kafka``: security arguments)."""

        async def prober(
            applied: Mapping[tuple[str, int], Applied],
        ) -> dict[tuple[str, int], Probe]:
            return await probe_logs(bootstrap, applied, kafka=kafka)

        return cls(state, prober, retry_max_delay)

    def revoked(self, tps: Iterable[tuple[str, int]]) -> None:
        """Partitions leaving this worker must be verified again if they come back."""
        for topic, partition in tps:
            self.verified.discard(f"{topic}:{partition}")

    async def check(self, records: Sequence[Record]) -> None:
        """Verify (and reset if needed) every partition of ``records`` not yet verified.

        Redis errors propagate (the caller retries the batch); broker errors
        are retried here, since folding an unverified partition could skip.
        """
        fresh = sorted({r.tp for r in records} - self.verified)
        if not fresh:
            return
        applied = await self.state.applied_positions(fresh)
        by_tp = {_split(tp): a for tp, a in applied.items()}
        probes = await self._probe(by_tp)
        for (topic, partition), a in by_tp.items():
            probe = probes.get((topic, partition), Probe(None, None, None))
            verdict = judge(a, probe)
            if verdict is Verdict.RESET:
                await self._reset(topic, partition, a, probe)
            elif verdict is Verdict.UNKNOWN:
                log.info(
                    "log of %s[%d] not verifiable at applied offset %d (%s, %s); trusting it",
                    topic,
                    partition,
                    a.offset,
                    a,
                    probe,
                )
        self.verified.update(fresh)

    async def _probe(
        self, applied: Mapping[tuple[str, int], Applied]
    ) -> dict[tuple[str, int], Probe]:
        delay = 0.2
        while True:
            try:
                return await self.prober(applied)
            except (KafkaError, OSError) as exc:
                log.warning("log probe failed (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)

    async def _reset(self, topic: str, partition: int, a: Applied, probe: Probe) -> None:
        tp = f"{topic}:{partition}"
        if not await self.state.reset_partition(tp, a.offset):
            return  # another worker moved it on: that worker judged the log already
        if self.on_reset is not None:
            self.on_reset(tp)
        metrics.LOG_RESETS.labels(topic).inc()
        log.error(
            "log of %s[%d] was reset (applied offset %d, log now ends at %s, record there %s); "
            "starting a new epoch from offset 0",
            topic,
            partition,
            a.offset,
            probe.high_watermark,
            "differs" if probe.found else "missing",
            extra={
                "topic": topic,
                "partition": partition,
                "old_offset": a.offset,
                "new_end_offset": probe.high_watermark,
            },
        )


def _split(tp: str) -> tuple[str, int]:
    topic, _, partition = tp.rpartition(":")
    return topic, int(partition)
