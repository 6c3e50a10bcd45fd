"""``GET /openapi.json``: the gateway's OpenAPI 3.1 document (``streams/gateway/openapi.py``).

Public, like the index: it names routes and shapes, never data. Rendered once
per process, with this gateway's event limit.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from streams.gateway.guard import public
from streams.gateway.keys import OPENAPI, SETTINGS
from streams.gateway.openapi import document


@public
async def openapi(request: web.Request) -> web.StreamResponse:
    """The OpenAPI document of every route."""
    return web.Response(
        body=request.app[OPENAPI],
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


def register(app: web.Application) -> None:
    """Add ``GET /openapi.json``."""
    settings = app[SETTINGS]
    app[OPENAPI] = orjson.dumps(document(settings.gateway_max_events, settings.journey_max_entries))
    app.router.add_get("/openapi.json", openapi, name="openapi")
