"""Reading the KPI counters from Redis for ``GET /v1/kpis`` and ``/metrics``.

One pipelined round trip: ``HGETALL P:k`` and two ``PFCOUNT`` over the
sessions-active window (every session changed in it, and those on two or
more channels). Redis is the one source of truth: every worker and relay
increments the same hash, so any gateway reports the same numbers.

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

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streams.core.activity import window
from streams.core.kpi_report import counters, report
from streams.gateway import metrics
from streams.gateway.sessions import RedisUnavailable
from streams.store import keys

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


async def read(redis: Redis, prefix: str, now: float | None = None) -> KpiInputs:
    """The KPI hash and the window's session counts; ``RedisUnavailable`` if Redis fails."""
    # The same buckets for both counts, so their ratio is a share.
    buckets = window(time.time() if now is None else now)
    active_keys = [keys.activity(prefix, b) for b in buckets]
    multi_keys = [keys.multichannel(prefix, b) for b in buckets]
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.kpis(prefix))
            pipe.pfcount(*active_keys)
            pipe.pfcount(*multi_keys)
            raw, active, multichannel = await pipe.execute()
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(repr(exc)) from None
    return KpiInputs(counters(raw), int(active), int(multichannel))


class ScrapeRefresher:
    """Refreshes the gateway's KPI gauges before a scrape is rendered."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._last_attempt = -MIN_REFRESH_SECONDS

    async def refresh(self, redis: Redis, prefix: str) -> None:
        """Read the KPIs into the gauges, unless done within the last second. Never raises."""
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT):
                async with self._lock:
                    if time.monotonic() - self._last_attempt < MIN_REFRESH_SECONDS:
                        return  # another scrape just read them (or just failed to)
                    self._last_attempt = time.monotonic()
                    inputs = await read(redis, prefix)
        except (RedisUnavailable, TimeoutError) as exc:
            metrics.KPI_REFRESH_ERRORS.inc()
            log.warning("KPI gauges not refreshed (Redis): %s", type(exc).__name__)
            return
        metrics.KPI_GAUGES.update(inputs.report(), time.time())
