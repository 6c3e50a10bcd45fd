"""``GET /v1/sessions/{id}``: one session as JSON, optionally after a read-your-writes wait.

Authorisation is decided on the key the id resolves to, before any wait
(nobody waits on a session they may not read) and again on the state
returned (a guest may have signed in meanwhile).

Headers on every answer: ``X-Continuity-Version`` (0 when there is no
session), how fresh the state is (``X-Continuity-Applied``, ``-Applied-At``,
``X-Continuity-Workers``: ``streams/gateway/freshness.py``; the gateway serves
the last committed state while every worker is down or rebalancing) and, with
a session, ``ETag: "<key>:<version>"``. When the request
asked to wait, ``X-Continuity-Wait`` says ``satisfied`` or ``timeout``: a
timed-out wait is still a 200 with the current state (or a 404), like a
Consul blocking query, so a client simply asks again.
"""

from __future__ import annotations

import time

from aiohttp import web
from redis.exceptions import RedisError

from streams.gateway import freshness
from streams.gateway.errors import NOT_FOUND, ApiError
from streams.gateway.guard import forbidden, principal_of
from streams.gateway.keys import REDIS, SESSIONS, SETTINGS
from streams.gateway.middleware import json_response
from streams.gateway.params import read_wait, session_id
from streams.gateway.policy import may_read
from streams.gateway.sessions import View

VERSION_HEADER = "X-Continuity-Version"
WAIT_HEADER = "X-Continuity-Wait"


async def get_session(request: web.Request) -> web.StreamResponse:
    """The public JSON of a session (``Session.public()``), or a 404."""
    sid = session_id(request.match_info["id"])
    want = read_wait(request.query, request.app[SETTINGS].gateway_max_wait)
    sessions = request.app[SESSIONS]
    view = await sessions.locate(sid)
    _authorize(request, sid, view)
    satisfied = True
    if want.wanted:
        view, satisfied = await sessions.wait(sid, want)
        _authorize(request, sid, view)
    headers = {VERSION_HEADER: str(view.version), "Cache-Control": "no-store"}
    headers.update(await freshness_headers(request, view.key))
    if want.wanted:
        headers[WAIT_HEADER] = "satisfied" if satisfied else "timeout"
    if view.session is None:
        raise ApiError(404, NOT_FOUND, "no session for this id (yet)", headers=headers)
    headers["ETag"] = f'"{view.key}:{view.version}"'
    return json_response(view.session.public(), headers=headers)


async def freshness_headers(request: web.Request, key: str) -> dict[str, str]:
    """How fresh the state of ``key`` is (``streams/gateway/freshness.py``); none if
    Redis cannot say: the session itself was read, so the answer still stands."""
    settings = request.app[SETTINGS]
    try:
        fresh = await freshness.read(
            request.app[REDIS], settings.redis_prefix, key, settings.topic_partitions
        )
    except (RedisError, OSError):
        return {}
    return fresh.headers(int(time.time() * 1000), settings.worker_stale_after)


def _authorize(request: web.Request, sid: str, view: View) -> None:
    denied = may_read(principal_of(request), sid, view.key)
    if denied is not None:
        raise forbidden(denied)


def register(app: web.Application) -> None:
    """Add the session read route."""
    app.router.add_get("/v1/sessions/{id}", get_session, name="session")
