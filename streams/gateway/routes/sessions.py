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

``?as_of=T`` (service and pos tokens; a customer token gets a 403) answers the
session as it was at ``T``, refolded from the retained topics by the workers'
pure fold (``streams/core/time_travel.py``, ``streams/ops/time_travel.py``), with an
``as_of`` object saying what was folded. It reads the topics from their start,
so it is bounded: at most ``MAX_AS_OF_READS`` at once per gateway, each within
``CONTINUITY_AS_OF_TIMEOUT`` seconds, or a ``503 as_of_timeout``.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiokafka.errors import KafkaError

from streams.gateway import freshness
from streams.gateway.auth import Role
from streams.gateway.errors import AS_OF_TIMEOUT, KAFKA_UNAVAILABLE, NOT_FOUND, ApiError
from streams.gateway.guard import forbidden, principal_of
from streams.gateway.keys import REDIS, SESSIONS, SETTINGS
from streams.gateway.middleware import json_response
from streams.gateway.params import read_as_of, read_wait, session_id
from streams.gateway.policy import FORBIDDEN, Denied, may_read
from streams.gateway.sessions import RedisUnavailable, View
from streams.kafka.security import kafka_client_kwargs
from streams.ops.time_travel import TimeTravel, session_as_of
from streams.store.client import UNAVAILABLE
from streams.store.state import RedisState

VERSION_HEADER = "X-Continuity-Version"
WAIT_HEADER = "X-Continuity-Wait"
# Refolds at once per gateway: each reads the topics from their start.
MAX_AS_OF_READS = 2
AS_OF_SLOTS = web.AppKey("as_of_slots", asyncio.Semaphore)


async def get_session(request: web.Request) -> web.StreamResponse:
    """The public JSON of a session (``Session.public()``), or a 404."""
    sid = session_id(request.match_info["id"])
    moment = read_as_of(request.query, int(time.time() * 1000))
    if moment is not None:
        return await get_session_as_of(request, sid, moment)
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


async def get_session_as_of(request: web.Request, sid: str, moment_ms: int) -> web.Response:
    """The session as it was at ``moment_ms``, refolded from the topics, or a 404.

    An erased customer's past is never refolded: before the erasure there is
    nothing (404), after it only the activity since.
    """
    if principal_of(request).role is Role.CUSTOMER:
        raise forbidden(Denied(FORBIDDEN, "a customer token may not read a session's past"))
    settings = request.app[SETTINGS]
    state = RedisState(request.app[REDIS], settings.space())
    timer = asyncio.timeout(settings.as_of_timeout)
    try:
        async with timer, request.app[AS_OF_SLOTS]:
            found = await session_as_of(
                settings.kafka_bootstrap,
                state,
                sid,
                moment_ms,
                settings.fold_limits(),
                kafka=kafka_client_kwargs(settings),
            )
    except TimeoutError:
        if not timer.expired():
            raise _kafka_unavailable("Kafka did not answer in time") from None
        raise _too_slow(settings.as_of_timeout) from None
    except UNAVAILABLE as exc:
        raise RedisUnavailable(repr(exc)) from None
    except KafkaError as exc:  # LogUnreadable included
        raise _kafka_unavailable(str(exc) or type(exc).__name__) from None
    if timer.expired():
        # A client library swallowed the cancellation and the refold finished late:
        # the limit is the limit, whatever it cost.
        raise _too_slow(settings.as_of_timeout)
    return _as_of_answer(found)


def _too_slow(limit: float) -> ApiError:
    return ApiError(
        503,
        AS_OF_TIMEOUT,
        f"refolding the session took longer than {limit:g} s "
        "(CONTINUITY_AS_OF_TIMEOUT); use `continuity session show ID --as-of T`",
        headers={"Retry-After": "5"},
    )


def _as_of_answer(found: TimeTravel) -> web.Response:
    result = found.result
    headers = {"Cache-Control": "no-store"}
    body = found.body()
    if body is None:
        why = (
            "this customer was erased; an erased session is never refolded"
            if result.erased
            else "no session for this id at that moment"
        )
        raise ApiError(
            404, NOT_FOUND, why, headers={VERSION_HEADER: "0"}, extra={"as_of": found.as_of()}
        )
    assert result.session is not None
    headers[VERSION_HEADER] = str(result.session.version)
    return json_response(body, headers=headers)


def _kafka_unavailable(detail: str) -> ApiError:
    return ApiError(
        503,
        KAFKA_UNAVAILABLE,
        f"the event log cannot be read to refold the session: {detail}",
        headers={"Retry-After": "5"},
    )


async def freshness_headers(request: web.Request, key: str) -> dict[str, str]:
    """How fresh the state of ``key`` is (``streams/gateway/freshness.py``); none if
    Redis cannot say: the session itself was read, so the answer still stands."""
    settings = request.app[SETTINGS]
    try:
        fresh = await freshness.read(request.app[REDIS], settings.space(), key)
    except UNAVAILABLE:
        return {}
    return fresh.headers(int(time.time() * 1000), settings.worker_stale_after)


def _authorize(request: web.Request, sid: str, view: View) -> None:
    denied = may_read(principal_of(request), sid, view.key)
    if denied is not None:
        raise forbidden(denied)


def register(app: web.Application) -> None:
    """Add the session read route."""
    app[AS_OF_SLOTS] = asyncio.Semaphore(MAX_AS_OF_READS)
    app.router.add_get("/v1/sessions/{id}", get_session, name="session")
