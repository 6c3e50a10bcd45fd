"""JSON error bodies for every failure, and request metrics by route template.

Whatever goes wrong, the client gets ``{"error", "message"}`` with a fitting
status: an ``ApiError`` from a handler, aiohttp's own 404/405/413, a body
that cannot be decoded (400) or that does not arrive in time (408, and the
connection closed), Redis down (503), or an unexpected bug (500, logged with
the route template and never with the query string, which may carry a
token). aiohttp's 417 for an unknown ``Expect`` is sent before any middleware
runs; ``json_escaped_errors`` gives it the same body.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiohttp import hdrs, web

from streams.gateway import metrics
from streams.gateway.errors import (
    BODY_TIMEOUT,
    CODE_BY_STATUS,
    INTERNAL,
    MALFORMED_JSON,
    REDIS_UNAVAILABLE,
    ApiError,
)
from streams.gateway.guard import Handler
from streams.gateway.keys import SETTINGS, STREAMING
from streams.gateway.request_body import BodyCutShort, BodyTimeout
from streams.gateway.sessions import RedisUnavailable

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response (orjson: decimals as strings are already strings in the models)."""
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def render(exc: ApiError) -> web.Response:
    """The response for an ``ApiError``."""
    return json_response(exc.body(), exc.status, exc.headers)


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every answered request by route template, method and status class."""
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        # The client left; an event stream normally ends this way, after its 200.
        if STREAMING in request:
            _count(request, request[STREAMING])
        raise
    _count(request, response.status)
    return response


def _count(request: web.Request, status: int) -> None:
    metrics.HTTP_REQUESTS.labels(
        route_template(request), request.method, f"{status // 100}xx"
    ).inc()


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error body; the gateway never crashes on input."""
    try:
        return await handler(request)
    except ApiError as exc:
        return render(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = CODE_BY_STATUS.get(exc.status, f"http_{exc.status}")
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        # aiohttp's 413 is its client_max_size, which is the gateway's body limit.
        extra = {"limit": request.app[SETTINGS].gateway_max_body_bytes} if exc.status == 413 else {}
        return render(ApiError(exc.status, code, _http_message(exc), headers=headers, extra=extra))
    except web.RequestPayloadError:
        # The body broke its Content-Encoding (gzip, deflate) or its chunked framing
        # while a handler read it: the client's fault, not a bug.
        return render(
            ApiError(
                400,
                MALFORMED_JSON,
                "the request body cannot be decoded (its Content-Encoding or chunked framing)",
            )
        )
    except BodyCutShort:
        # Nobody is left to read this answer; it is a 400 in the access log and the
        # request counter, not an error in the gateway's log.
        return render(
            ApiError(400, MALFORMED_JSON, "the connection closed before the body was complete")
        )
    except BodyTimeout as exc:
        return await _answer_and_close(request, render(ApiError(408, BODY_TIMEOUT, str(exc))))
    except RedisUnavailable as exc:
        log.warning("Redis unavailable on %s %s: %s", request.method, route_template(request), exc)
        return render(
            ApiError(
                503,
                REDIS_UNAVAILABLE,
                "session storage is unavailable; retry shortly",
                headers={"Retry-After": "1"},
            )
        )
    except Exception:
        log.exception("unexpected error on %s %s", request.method, route_template(request))
        return render(ApiError(500, INTERNAL, "unexpected error; it has been logged"))


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send ``response``, then close the connection at once.

    The rest of an unfinished body cannot be told apart from a next request,
    and aiohttp would otherwise keep reading it for its lingering time (10 s).
    """
    response.force_close()  # ``Connection: close``
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the answer is flushed before the socket closes
    return response


async def json_escaped_errors(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the JSON error body for aiohttp errors the middlewares never saw.

    aiohttp runs its ``Expect`` check after routing but before the middlewares
    and answers an expectation other than ``100-continue`` with a plain-text
    417 of its own; every error the middlewares see is already rendered, and a
    request the parser refused has no route, so no signal: this is the 417.
    """
    if not isinstance(response, web.HTTPException) or response.status < 400:
        return
    code = CODE_BY_STATUS.get(response.status, f"http_{response.status}")
    body = orjson.dumps(ApiError(response.status, code, _http_message(response)).body())
    response.body = body
    response.headers[hdrs.CONTENT_TYPE] = "application/json"
    # The length was taken from the plain text before this signal.
    if hdrs.CONTENT_LENGTH in response.headers:
        response.headers[hdrs.CONTENT_LENGTH] = str(len(body))


def route_template(request: web.Request) -> str:
    """The route's path template (``/v1/sessions/{id}``), never the concrete path."""
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED
    return resource.canonical


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 413:
        # aiohttp's text names both sizes; say it plainly, with the limit.
        return f"the request body is too large: {exc.text}"
    if exc.status == 404:
        return "no such route"
    if exc.status == 405:
        return "method not allowed on this route"
    if exc.status == 417:
        return "the only expectation understood is Expect: 100-continue"
    return exc.reason
