"""The worker's HTTP port: ``/metrics``, ``/healthz`` and ``/readyz``. Thin edge.

It runs on the worker's own event loop, so ``/healthz`` answering proves the
loop is not stuck. ``/readyz`` PINGs Redis (with a short timeout; an answer clears an outage
but not refused writes, which only a commit clears) and reports
the judgement of ``streams/core/readiness.py``: 200 ``ready``, or 503 with the
reasons, one per line.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.core.readiness import Readiness
from streams.store.client import Client

PING_TIMEOUT = 2.0


def health_app(readiness: Readiness, redis: Client) -> web.Application:
    """The aiohttp application serving the three routes."""

    async def metrics_route(_: web.Request) -> web.Response:
        body = generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(redis.ping(), PING_TIMEOUT)
        except Exception:  # any failure to answer is "unreachable", never a 500
            readiness.redis_failed(time.monotonic())
        else:
            readiness.redis_answered()
        problems = readiness.problems(time.monotonic())
        if problems:
            return web.Response(status=503, text="not ready: " + "\n".join(problems) + "\n")
        return web.Response(text="ready\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_route)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving ``app``; the caller keeps the runner to clean it up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
