"""``GET /v1/kpis``: the omnichannel KPI report, for the retailer's back office.

The report (``streams/core/kpi_report.py``) covers every customer and store, so
only ``service`` tokens read it. One pipelined Redis round trip
(``streams/gateway/kpis.py``); Redis down is a ``503 redis_unavailable``.
The same numbers are on ``/metrics`` as ``continuity_kpi_*`` gauges.
"""

from __future__ import annotations

import time

from aiohttp import web

from streams.gateway import kpis
from streams.gateway.guard import forbidden, principal_of
from streams.gateway.keys import REDIS, SETTINGS
from streams.gateway.middleware import json_response
from streams.gateway.policy import may_read_kpis


async def get_kpis(request: web.Request) -> web.StreamResponse:
    """The KPI report as JSON, with the time it was read."""
    denied = may_read_kpis(principal_of(request))
    if denied is not None:
        raise forbidden(denied)
    now = time.time()
    inputs = await kpis.read(request.app[REDIS], request.app[SETTINGS].space(), now)
    body = {"generated_at": _iso(now), **inputs.report()}
    return json_response(body, headers={"Cache-Control": "no-store"})


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def register(app: web.Application) -> None:
    """Add the KPI route."""
    app.router.add_get("/v1/kpis", get_kpis, name="kpis")
