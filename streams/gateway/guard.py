"""Authentication of every request, and the 403 answer for out-of-scope ones.

Every route needs ``Authorization: Bearer <token>`` unless its handler is
marked ``@public`` (health, readiness, metrics, the index). A handler marked
``@query_token`` also takes ``?access_token=`` (the event stream: browsers'
``EventSource`` cannot set headers); elsewhere a token in the URL is ignored,
so tokens do not spread into URLs that need not carry them. Two
``Authorization`` headers (or two ``access_token``) are a 401 ``invalid_token``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from streams.gateway import metrics
from streams.gateway.auth import Principal, TokenError, bearer_token, verify
from streams.gateway.errors import INVALID_TOKEN, MISSING_TOKEN, ApiError
from streams.gateway.keys import KEYS, LIFETIMES, PRINCIPAL
from streams.gateway.policy import Denied

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_PUBLIC = "_continuity_public"
_QUERY_TOKEN = "_continuity_query_token"
_CHALLENGE = 'Bearer realm="continuity"'


def public(handler: Handler) -> Handler:
    """Mark a handler as open to requests without a token."""
    setattr(handler, _PUBLIC, True)
    return handler


def query_token(handler: Handler) -> Handler:
    """Let a handler take its token from ``?access_token=`` too."""
    setattr(handler, _QUERY_TOKEN, True)
    return handler


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Verify the bearer token and store its ``Principal`` on the request, or answer 401."""
    match = request.match_info
    # Unknown routes and methods get their 404/405 whatever the token.
    if match.http_exception is not None or getattr(match.handler, _PUBLIC, False):
        return await handler(request)
    # More than one credential is refused, not picked from: a proxy in front may
    # have judged another one than the gateway would use.
    headers = request.headers.getall("Authorization", [])
    if len(headers) > 1:
        raise _invalid(TokenError(INVALID_TOKEN, "send exactly one Authorization header"))
    token = bearer_token(headers[0] if headers else None)
    if token is None and getattr(match.handler, _QUERY_TOKEN, False):
        queried = request.query.getall("access_token", [])
        if len(queried) > 1:
            raise _invalid(TokenError(INVALID_TOKEN, "send exactly one access_token"))
        if queried:
            token = queried[0] or None
    if token is None:
        metrics.AUTH_FAILURES.labels(MISSING_TOKEN).inc()
        raise ApiError(
            401,
            MISSING_TOKEN,
            "send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    try:
        lifetimes: dict[str, int] = request.app[LIFETIMES]
        request[PRINCIPAL] = verify(request.app[KEYS], token, lifetimes)
    except TokenError as exc:
        raise _invalid(exc) from None
    return await handler(request)


def _invalid(exc: TokenError) -> ApiError:
    """The 401 for a token that cannot be trusted (counted)."""
    metrics.AUTH_FAILURES.labels(exc.code).inc()
    return ApiError(
        401,
        exc.code,
        exc.message,
        headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
    )


def principal_of(request: web.Request) -> Principal:
    """The verified principal of an authenticated request."""
    return request[PRINCIPAL]


def forbidden(denied: Denied) -> ApiError:
    """The 403 for a valid token acting outside its scope (counted)."""
    metrics.AUTH_FAILURES.labels(denied.code).inc()
    return ApiError(403, denied.code, denied.message)
