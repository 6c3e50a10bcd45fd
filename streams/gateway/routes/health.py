"""``/healthz`` (the process answers), ``/readyz`` (its dependencies answer), and
``/metrics`` on a listener of its own.

Readiness checks Redis (PING), Kafka (a metadata round trip) and the shared
pub/sub connection, each with a timeout, and names what is down in a 503, so
a load balancer stops sending traffic to a gateway that cannot serve it.

``/metrics`` carries the business KPIs (``continuity_kpi_*``: carts,
conversion, abandonment by channel), which ``GET /v1/kpis`` serves to service
tokens only. So it is not on the API's port, which faces frontends and tills:
it is served by a second listener (``CONTINUITY_GATEWAY_METRICS_HOST`` and
``_PORT``, off by default) that Prometheus scrapes without a token and that no
ingress routes to (docs/security.md, Network exposure). Each scrape first
refreshes the KPI gauges from Redis (``streams/gateway/kpis.py``: at most once
a second, bounded in time; a failure leaves the last values and is counted,
never fails the scrape).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from streams.gateway.errors import NOT_READY
from streams.gateway.guard import public
from streams.gateway.keys import FANOUT, PRODUCER, REDIS, SETTINGS
from streams.gateway.kpis import ScrapeRefresher
from streams.gateway.middleware import json_response

log = logging.getLogger(__name__)

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


async def metrics_text(api: web.Application) -> web.Response:
    """Prometheus text exposition of this process's metrics and the system's KPIs."""
    await api[KPI_REFRESHER].refresh(api[REDIS], api[SETTINGS].space())
    resp = web.Response(body=generate_latest(REGISTRY))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def metrics_listener(api: web.Application) -> AsyncIterator[None]:
    """Serve ``GET /metrics`` on the metrics host and port while ``api`` runs (a
    cleanup context of ``api``, after its connections). Binding fails the start."""
    settings = api[SETTINGS]
    if not settings.gateway_metrics_port:
        yield
        return

    async def scrape(request: web.Request) -> web.StreamResponse:
        return await metrics_text(api)

    listener = web.Application()
    listener.router.add_get("/metrics", scrape)
    runner = web.AppRunner(listener, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.gateway_metrics_host, settings.gateway_metrics_port)
        await site.start()
        log.info(
            "continuity gateway: /metrics on http://%s:%d",
            settings.gateway_metrics_host,
            settings.gateway_metrics_port,
        )
        yield
    finally:
        await runner.cleanup()


async def _check(probe: Awaitable[object]) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await probe
    except Exception:
        return False
    return True


def register(app: web.Application) -> None:
    """Add the health routes, and ``/metrics`` on its own listener when configured."""
    app[KPI_REFRESHER] = ScrapeRefresher()
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
