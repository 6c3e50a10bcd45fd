"""``GET /v1/sessions/{id}/stream``: a session's states as Server-Sent Events.

Order of work, so that no version is missed: authorise on the resolved key,
subscribe to its notices (confirmed by Redis), *then* read the state and
send it unless the client's ``Last-Event-ID`` already covers it; after that,
re-read and send on every notice (see ``streams.gateway.sse`` for what is
sent when). A slow client whose write times out
(``CONTINUITY_SSE_SEND_TIMEOUT``) is dropped; it reconnects with its
``Last-Event-ID`` and gets the newest state.

A stream lasts no longer than its token: at the token's ``exp`` it sends a
``token_expired`` event and ends, and the client reconnects with a fresh
token. One customer or pos token holds at most
``CONTINUITY_SSE_MAX_STREAMS_PER_TOKEN`` streams of a gateway (429 past it),
so no token takes every slot of ``CONTINUITY_SSE_MAX_CONNECTIONS``.

A wake-up by a notice that carries the state it announces (every session
write's, ``streams/core/notice.py``) costs no Redis read: the stream sends
that state. Any other wake-up costs one Redis read per key, not per stream:
the streams of one key on this gateway share their reads, the carried states
and the frame made from them (``streams/gateway/shared_read.py``: a stream
takes a state at least as new as the notice that woke it, joining a read in
flight or reusing the last result; ``fanout.py`` says how). The frame is the
stored JSON made public without a model (``streams/gateway/public_json.py``). A stream waits on its
subscriber's flag alone: the client leaving and the token expiring set that
flag too (a callback and a timer), so a round costs no task and no
``asyncio.wait``.

Stream reads go through a gate of ``STREAM_READS`` at a time. One commit
wakes every stream of its session at once (one read for all of them), a
pub/sub reconnect wakes every stream of the gateway (one read per followed
key), a restarted gateway is reconnected to by all its clients at once; each
wants a Redis read. The read client's connection pool
(shared with every route) holds 100 connections, redis-py's default, and a
read that finds it exhausted fails at once (``MaxConnectionsError``), which
ended the stream. Through the gate a burst queues instead, and the pool keeps
room for the other routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from streams.gateway import metrics, sse
from streams.gateway.auth import Role
from streams.gateway.errors import (
    REDIS_UNAVAILABLE,
    TOO_MANY_STREAMS,
    TOO_MANY_TOKEN_STREAMS,
    ApiError,
)
from streams.gateway.fanout import FanoutUnavailable, Subscriber
from streams.gateway.guard import forbidden, principal_of, query_token
from streams.gateway.keys import (
    FANOUT,
    SESSIONS,
    SETTINGS,
    STREAM_SLOTS,
    STREAMING,
    TOKEN_STREAM_SLOTS,
)
from streams.gateway.params import session_id
from streams.gateway.policy import may_read
from streams.gateway.public_json import public_json
from streams.gateway.rate_limit import identity
from streams.gateway.sessions import RedisUnavailable, Sessions
from streams.settings import Settings

log = logging.getLogger(__name__)

# Concurrent Redis reads of all streams on a gateway: well below the read client's
# pool (100), and plenty for one event loop (a read is one round trip on loopback).
STREAM_READS = 32
# Seconds a token at its stream limit is told to wait: long enough to close one.
TOKEN_STREAMS_RETRY = 5
READ_GATE = web.AppKey("stream_read_gate", asyncio.Semaphore)


@query_token
async def stream_session(request: web.Request) -> web.StreamResponse:
    """Follow one session live (``text/event-stream``)."""
    sid = session_id(request.match_info["id"])
    resume = sse.resume_from(
        request.headers.get("Last-Event-ID"), request.query.get("last_event_id")
    )
    app = request.app
    async with app[READ_GATE]:
        view = await app[SESSIONS].locate(sid)
    principal = principal_of(request)
    denied = may_read(principal, sid, view.key)
    if denied is not None:
        raise forbidden(denied)
    # A service token is the platform's own backend, bounded by the gateway's total only.
    who = None if principal.role is Role.SERVICE else identity(principal)
    mine = app[TOKEN_STREAM_SLOTS]
    if who is not None and not mine.take(who):
        metrics.RATE_LIMITED.labels("streams").inc()
        raise ApiError(
            429,
            TOO_MANY_TOKEN_STREAMS,
            f"this token has {mine.limit} streams open on this gateway already; "
            "close one, then retry",
            headers={"Retry-After": str(TOKEN_STREAMS_RETRY)},
            extra={"retry_after": TOKEN_STREAMS_RETRY, "limit": mine.limit},
        )
    slots = app[STREAM_SLOTS]
    if not slots.take():
        if who is not None:
            mine.give_back(who)
        metrics.SSE_REFUSED.inc()
        raise ApiError(
            503,
            TOO_MANY_STREAMS,
            "this gateway has no room for another stream; retry",
            headers={"Retry-After": "2"},
        )
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                sub = await stack.enter_async_context(app[FANOUT].subscribe(view.key))
            except FanoutUnavailable:
                raise ApiError(
                    503,
                    REDIS_UNAVAILABLE,
                    "live updates are unavailable right now; retry",
                    headers={"Retry-After": "1"},
                ) from None
            reads = _Reads(app[SESSIONS], app[READ_GATE])
            return await _follow(request, app[SETTINGS], reads, sub, resume, principal.expires_at)
    finally:
        slots.give_back()
        if who is not None:
            mine.give_back(who)


class _Response(EventSourceResponse):
    """The library's stream response with a cheaper line splitter (``sse.LineBreaks``)."""

    LINE_SEP_EXPR = sse.LineBreaks()  # type: ignore[assignment]


@dataclass(frozen=True)
class _State:
    """One read of a followed key, ready to send to each of its local streams."""

    frame: sse.Frame | None
    """The ``session`` or ``merged`` event; ``None`` while the key has no session."""
    version: int = 0
    merged: bool = False


class _Reads:
    """The streams' reads of their sessions, through the gateway's read gate, shared by
    the streams of one key."""

    def __init__(self, sessions: Sessions, gate: asyncio.Semaphore) -> None:
        self._sessions = sessions
        self._gate = gate

    async def state(self, sub: Subscriber, need: int) -> _State:
        """``sub``'s key as read after announcement ``need`` (see ``shared_read``)."""
        followed = sub.followed
        if followed is None:  # not subscribed through the fan-out: nothing to share with
            return await self._read(sub.key)
        carried = followed.carried
        if carried is not None and carried.at >= need:
            settled: _State = followed.shared.settle(carried.at, lambda: _stored(carried.stored))
            return settled
        state: _State = await followed.shared.get(
            need, lambda: followed.announced, lambda: self._read(sub.key)
        )
        return state

    async def _read(self, key: str) -> _State:
        metrics.SSE_READS.inc()
        async with self._gate:
            stored = await self._sessions.stored(key)
        if stored.blob is not None:
            return _stored(stored.blob)
        if stored.merged_into is not None:
            return _State(sse.merged_frame(key, stored.merged_into), merged=True)
        return _State(None)


def _stored(blob: bytes) -> _State:
    """The ``session`` event of a stored session value."""
    body, version = public_json(blob)
    return _State(sse.session_frame(body, version), version)


async def _follow(
    request: web.Request,
    settings: Settings,
    reads: _Reads,
    sub: Subscriber,
    resume: int | None,
    expires_at: float | None,
) -> web.StreamResponse:
    cursor = sse.Cursor(resume)
    if resume is not None:
        metrics.SSE_RESUMES.inc()
    metrics.SSE_SUBSCRIBERS.inc()
    started = time.monotonic()
    ending = "client gone"
    try:
        async with sse_response(
            request,
            ping_interval=settings.sse_heartbeat,
            send_timeout=settings.sse_send_timeout,
            headers={"Cache-Control": "no-store"},
            response_cls=_Response,
        ) as resp:
            request[STREAMING] = resp.status
            ending = await _pump(resp, reads, sub, cursor, expires_at)
    finally:
        metrics.SSE_SUBSCRIBERS.dec()
        # The access log has no line for a stream the client closed (its handler is
        # cancelled), so the stream says how it ended itself: path only, never the query.
        log.info(
            "stream %s ended: %s after %.1fs at version %d",
            request.rel_url.raw_path,
            ending,
            time.monotonic() - started,
            cursor.last,
        )
    return resp


async def _pump(
    resp: EventSourceResponse,
    reads: _Reads,
    sub: Subscriber,
    cursor: sse.Cursor,
    expires_at: float | None = None,
) -> str:
    """Send states until the session is merged away, the token expires (at ``expires_at``,
    Unix seconds), the gateway stops or the client goes.

    Returns how the stream ended.
    """
    # Whatever ends the stream wakes it through the subscriber's flag, as a notice does.
    closed = asyncio.ensure_future(resp.wait())
    closed.add_done_callback(lambda _: sub.dirty.set())
    expiry = _Expiry(sub, expires_at)
    try:
        await resp.write(sse.retry_field())
        while not sub.closing:
            # Cleared before the read: a notice landing during it wakes the next round.
            sub.dirty.clear()
            # Taken before the read too: a notice landing during it is the next round's news.
            appended_ms = sub.take_appended()
            need = sub.followed.announced if sub.followed is not None else 0
            frame, last = await _next_frame(reads, sub, cursor, need)
            if frame is not None:
                await resp.send(frame.data, id=frame.id, event=frame.event)
                metrics.SSE_MESSAGES.inc()
                if appended_ms is not None and frame.event == sse.SESSION:
                    metrics.FRESHNESS.observe(max(0.0, time.time() - appended_ms / 1000))
            if last:
                return "merged"
            # Event.wait drops its waiter when cancelled (the client left): nothing
            # is left pending on the flag.
            await sub.dirty.wait()
            if closed.done():
                metrics.SSE_DROPS.labels("closed").inc()
                return "client gone"
            if expiry.passed:
                frame = sse.expired_frame()
                await resp.send(frame.data, event=frame.event)
                metrics.SSE_DROPS.labels("token_expired").inc()
                return "token expired"
        return "gateway stopping"
    except TimeoutError:
        metrics.SSE_DROPS.labels("slow").inc()
        return "dropped: a write timed out (slow client)"
    except ConnectionError:
        metrics.SSE_DROPS.labels("closed").inc()
        return "client gone"
    except asyncio.CancelledError:
        metrics.SSE_DROPS.labels("closed").inc()
        raise
    except RedisUnavailable:
        # The client reconnects with Last-Event-ID and resumes.
        return "Redis unavailable"
    except Exception:
        # The headers are sent: no error body is possible any more, only an end.
        log.exception("ending a stream after an unexpected error")
        return "unexpected error"
    finally:
        closed.cancel()
        expiry.cancel()


class _Expiry:
    """The token's end: at ``expires_at`` (Unix seconds) it marks itself passed and wakes
    the stream. A token checked once at the start must not keep a stream open past its exp."""

    def __init__(self, sub: Subscriber, expires_at: float | None) -> None:
        self.passed = False
        self._sub = sub
        self._timer = (
            None
            if expires_at is None
            else asyncio.get_running_loop().call_later(
                max(0.0, expires_at - time.time()), self._pass
            )
        )

    def _pass(self) -> None:
        self.passed = True
        self._sub.dirty.set()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


async def _next_frame(
    reads: _Reads, sub: Subscriber, cursor: sse.Cursor, need: int
) -> tuple[sse.Frame | None, bool]:
    """What to send after a wake-up (``need``: the announcement it woke with), and whether
    it ends the stream."""
    if sub.merged_into is not None:
        return sse.merged_frame(sub.key, sub.merged_into), True
    state = await reads.state(sub, need)
    if state.merged:
        return state.frame, True
    if state.frame is not None and cursor.offer(state.version):
        return state.frame, False
    return None, False


def register(app: web.Application) -> None:
    """Add the stream route."""
    app[READ_GATE] = asyncio.Semaphore(STREAM_READS)
    app.router.add_get("/v1/sessions/{id}/stream", stream_session, name="session_stream")
