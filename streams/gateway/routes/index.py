"""``GET /``: what this service is and where its routes are.

A plain JSON index; in development (``CONTINUITY_GATEWAY_DEMO``) the demo
page (``routes_demo``) takes this route over.
"""

from __future__ import annotations

from aiohttp import web

from streams.gateway.guard import public
from streams.gateway.keys import SETTINGS
from streams.gateway.middleware import json_response

ROUTES = {
    "read": "GET /v1/sessions/{id}?min_version=&after=&wait=",
    "stream": "GET /v1/sessions/{id}/stream (text/event-stream)",
    "journey": "GET /v1/sessions/{id}/journey?limit=",
    "ingest": "POST /v1/events",
    "handoff": "POST /v1/sessions/{id}/handoff",
    "claim": "POST /v1/handoffs/{code}/claim",
    "erase": "DELETE /v1/sessions/{id}",
    "kpis": "GET /v1/kpis",
    "health": "GET /healthz",
    "ready": "GET /readyz",
}


@public
async def index(request: web.Request) -> web.StreamResponse:
    """The service name and its routes."""
    return json_response({"service": "continuity-gateway", "routes": ROUTES})


def register(app: web.Application) -> None:
    """Add ``GET /``, unless the demo page serves it."""
    if app[SETTINGS].gateway_demo:
        return
    app.router.add_get("/", index, name="index")
