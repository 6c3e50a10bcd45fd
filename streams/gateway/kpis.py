"""Reading the KPI counters from Redis for ``GET /v1/kpis`` and ``/metrics``.

One pipelined round trip over every partition: its KPI hash
(``cont:{p<N>}:k``) and two ``PFCOUNT`` over its sessions-active window
(every session changed in it, and those on two or more channels). The
totals are the sums over the partitions: each commit increments its own
partition's hash, and a HyperLogLog's members are session keys, placed by
their own partition, so the partitions' sets are disjoint and their counts
add up. No command names keys of two partitions (on a cluster they are two
slots). Redis is the one source of truth, so any gateway reports the same
numbers.

For ``/metrics`` the read happens at scrape time, at most once per
``MIN_REFRESH_SECONDS`` however many scrapers ask (concurrent scrapes share
one read), and within ``REFRESH_TIMEOUT`` seconds: when Redis does not
answer, the gauges keep their last values, the failure is counted and the
scrape is served anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from streams.core.activity import window
from streams.core.kpi_report import counters, report
from streams.gateway import metrics
from streams.gateway.sessions import RedisUnavailable
from streams.store import keys
from streams.store.client import UNAVAILABLE, Client
from streams.store.keys import Space

log = logging.getLogger(__name__)

MIN_REFRESH_SECONDS = 1.0
REFRESH_TIMEOUT = 1.0


@dataclass(frozen=True)
class KpiInputs:
    """What the report is computed from, as read in one round trip."""

    fields: dict[str, int]
    active: int
    multichannel: int

    def report(self) -> dict[str, Any]:
        """The KPI report (``streams.kpi_report.report``)."""
        return report(self.fields, self.active, self.multichannel)


async def read(redis: Client, space: Space, now: float | None = None) -> KpiInputs:
    """The KPI totals and the window's session counts; ``RedisUnavailable`` if Redis fails."""
    # The same buckets for both counts, so their ratio is a share.
    buckets = window(time.time() if now is None else now)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for n in space.all_partitions():
                pipe.hgetall(keys.kpis(space, n))
                # Not ``pipe.pfcount``: a cluster pipeline refuses that method by name
                # whatever its keys; these are of one partition, one slot.
                pipe.execute_command("PFCOUNT", *[keys.activity(space, n, b) for b in buckets])
                pipe.execute_command("PFCOUNT", *[keys.multichannel(space, n, b) for b in buckets])
            replies = await pipe.execute()
    except UNAVAILABLE as exc:
        raise RedisUnavailable(repr(exc)) from None
    fields: dict[str, int] = {}
    active = multichannel = 0
    for i in range(0, len(replies), 3):
        for name, value in counters(replies[i]).items():
            fields[name] = fields.get(name, 0) + value
        active += int(replies[i + 1])
        multichannel += int(replies[i + 2])
    return KpiInputs(fields, active, multichannel)


class ScrapeRefresher:
    """Refreshes the gateway's KPI gauges before a scrape is rendered."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._last_attempt = -MIN_REFRESH_SECONDS

    async def refresh(self, redis: Client, space: Space) -> None:
        """Read the KPIs into the gauges, unless done within the last second. Never raises."""
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT):
                async with self._lock:
                    if time.monotonic() - self._last_attempt < MIN_REFRESH_SECONDS:
                        return  # another scrape just read them (or just failed to)
                    self._last_attempt = time.monotonic()
                    inputs = await read(redis, space)
        except (RedisUnavailable, TimeoutError) as exc:
            metrics.KPI_REFRESH_ERRORS.inc()
            log.warning("KPI gauges not refreshed (Redis): %s", type(exc).__name__)
            return
        metrics.KPI_GAUGES.update(inputs.report(), time.time())
