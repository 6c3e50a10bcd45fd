"""``GET /``: what this service is and where its routes are.

A plain JSON index for now; a demo page may take this route over (a module
of its own with a ``register(app)``, listed in ``streams.gateway.app``).
"""

from __future__ import annotations

from aiohttp import web

from streams.gateway.guard import public
from streams.gateway.middleware import json_response

ROUTES = {
    "read": "GET /v1/sessions/{id}?min_version=&after=&wait=",
    "stream": "GET /v1/sessions/{id}/stream (text/event-stream)",
    "ingest": "POST /v1/events",
    "health": "GET /healthz",
    "ready": "GET /readyz",
    "metrics": "GET /metrics",
}


@public
async def index(request: web.Request) -> web.StreamResponse:
    """The service name and its routes."""
    return json_response({"service": "continuity-gateway", "routes": ROUTES})


def register(app: web.Application) -> None:
    """Add ``GET /``."""
    app.router.add_get("/", index, name="index")
