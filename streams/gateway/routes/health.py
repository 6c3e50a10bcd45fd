"""``/healthz`` (the process answers), ``/readyz`` (its dependencies answer), ``/metrics``.

Readiness checks Redis (PING), Kafka (a metadata round trip) and the shared
pub/sub connection, each with a timeout, and names what is down in a 503, so
a load balancer stops sending traffic to a gateway that cannot serve it.

``/metrics`` first refreshes the ``continuity_kpi_*`` gauges from Redis
(``streams/gateway/kpis.py``: at most once a second, bounded in time, and a
failure leaves the last values and is counted, never fails the scrape).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from streams.gateway.errors import NOT_READY
from streams.gateway.guard import public
from streams.gateway.keys import FANOUT, PRODUCER, REDIS, SETTINGS
from streams.gateway.kpis import ScrapeRefresher
from streams.gateway.middleware import json_response

CHECK_TIMEOUT = 2.0
KPI_REFRESHER = web.AppKey("kpi_refresher", ScrapeRefresher)


@public
async def healthz(request: web.Request) -> web.StreamResponse:
    """200 while the process serves requests."""
    return json_response({"status": "ok"})


@public
async def readyz(request: web.Request) -> web.StreamResponse:
    """200 when Redis, Kafka and pub/sub answer; 503 naming what does not."""
    app = request.app
    redis_ok, kafka_ok = await asyncio.gather(
        _check(app[REDIS].ping()), _check(app[PRODUCER].ping())
    )
    checks = {
        "redis": "up" if redis_ok else "down",
        "kafka": "up" if kafka_ok else "down",
        "pubsub": "up" if app[FANOUT].up else "down",
    }
    down = [name for name, state in checks.items() if state == "down"]
    if not down:
        return json_response({"status": "ready", "checks": checks})
    return json_response(
        {"error": NOT_READY, "message": f"down: {', '.join(down)}", "checks": checks},
        status=503,
        headers={"Retry-After": "1"},
    )


@public
async def metrics_text(request: web.Request) -> web.StreamResponse:
    """Prometheus text exposition of this process's metrics and the system's KPIs."""
    app = request.app
    await app[KPI_REFRESHER].refresh(app[REDIS], app[SETTINGS].space())
    resp = web.Response(body=generate_latest(REGISTRY))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def _check(probe: Awaitable[object]) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await probe
    except Exception:
        return False
    return True


def register(app: web.Application) -> None:
    """Add the three operational routes."""
    app[KPI_REFRESHER] = ScrapeRefresher()
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics_text, name="metrics")
