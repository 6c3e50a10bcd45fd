"""``GET /`` in development: a three-pane demo (mobile, desktop, in-store POS).

Served only when ``CONTINUITY_GATEWAY_DEMO`` is on (``continuity dev`` turns
it on); otherwise ``GET /`` stays the JSON index. Plain HTML, CSS and
JavaScript from ``streams/gateway/static/``, no build step; the page uses the
browser client every frontend may vendor (``static/client/continuity.js``). The page takes
its tokens from the URL fragment (``/#customer=...&token=...&pos=...``,
and ``&service=...`` for the live KPIs of ``GET /v1/kpis``), which browsers
never send to a server, so they stay out of every log; it talks to the same
public API as any frontend (``/v1/...``) and needs no route of its own. The
service token in the fragment is a development convenience (``continuity
dev`` signs it with a throwaway key); never build such a page for production.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from streams.gateway.errors import NOT_FOUND, ApiError
from streams.gateway.guard import public
from streams.gateway.keys import SETTINGS

# The only files served, with their types: nothing else under static/ is reachable.
FILES: dict[str, str] = {
    "demo.html": "text/html",
    "demo.css": "text/css",
    "demo.js": "text/javascript",
    "continuity.js": "text/javascript",
}
# Files kept below static/: the browser client is a package of its own (client/, with
# its package.json and types), which the page imports as /static/continuity.js.
_PATHS = {"continuity.js": "client/continuity.js"}
_HEADERS = {
    "Cache-Control": "no-store",
    # Scripts and connections to this origin only; no framing, no referrer.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
DEMO_FILES = web.AppKey("demo_files", dict)


@public
async def page(request: web.Request) -> web.StreamResponse:
    """The demo page."""
    return _serve(request, "demo.html")


@public
async def asset(request: web.Request) -> web.StreamResponse:
    """The page's stylesheet or script."""
    return _serve(request, request.match_info["name"])


def _serve(request: web.Request, name: str) -> web.StreamResponse:
    files: dict[str, bytes] = request.app[DEMO_FILES]
    if name not in files:
        raise ApiError(404, NOT_FOUND, "no such file")
    return web.Response(
        body=files[name], content_type=FILES[name], charset="utf-8", headers=_HEADERS
    )


def load() -> dict[str, bytes]:
    """The demo's files, read once from the installed package."""
    folder = resources.files("streams.gateway").joinpath("static")
    return {name: folder.joinpath(_PATHS.get(name, name)).read_bytes() for name in FILES}


def register(app: web.Application) -> None:
    """Add ``GET /`` and ``GET /static/{name}`` when the demo is on."""
    if not app[SETTINGS].gateway_demo:
        return
    app[DEMO_FILES] = load()
    app.router.add_get("/", page, name="demo")
    app.router.add_get("/static/{name}", asset, name="demo_asset")
