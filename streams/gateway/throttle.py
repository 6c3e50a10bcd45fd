"""Applying the per-token rate limits to a request: the 429 answer and Redis outages."""

from __future__ import annotations

import logging

from aiohttp import web

from streams.gateway import metrics
from streams.gateway.auth import Principal, Role
from streams.gateway.errors import RATE_LIMITED, ApiError
from streams.gateway.keys import LIMITER
from streams.gateway.rate_limit import identity
from streams.gateway.sessions import RedisUnavailable
from streams.store.client import UNAVAILABLE

log = logging.getLogger(__name__)


async def throttle(
    request: web.Request, principal: Principal, limit: str, cost: int, *, fail_open: bool
) -> None:
    """Consume ``cost`` from ``limit`` for this token; raise a 429 ``ApiError`` if exceeded.

    If Redis cannot be asked: ``fail_open`` lets the request through (ingest
    must not lose events to an outage of a safeguard); otherwise it is a 503.
    """
    try:
        exceeded = await request.app[LIMITER].hit(limit, identity(principal), cost)
    except UNAVAILABLE as exc:
        metrics.RATE_LIMIT_ERRORS.inc()
        if fail_open:
            log.warning("rate limit %s unchecked: Redis unavailable", limit)
            return
        raise RedisUnavailable(repr(exc)) from None
    if exceeded is None:
        return
    metrics.RATE_LIMITED.labels(limit).inc()
    raise ApiError(
        429,
        RATE_LIMITED,
        f"this token is over its rate limit ({exceeded.limit}); retry in {exceeded.retry_after} s",
        headers={"Retry-After": str(exceeded.retry_after)},
        extra={"retry_after": exceeded.retry_after, "limit": exceeded.limit},
    )


def ingest_limit(principal: Principal) -> str:
    """Which ingest limit a token is counted against."""
    return "ingest-service" if principal.role is Role.SERVICE else "ingest"
