"""``POST /v1/events``: validate, authorise and publish events; answer per event.

The body is one event object or an array of up to
``CONTINUITY_GATEWAY_MAX_EVENTS``, at most ``CONTINUITY_GATEWAY_MAX_BODY_BYTES``
bytes, sent as ``application/json``. Each event is judged on its own
(``streams.gateway.ingest``); the valid ones this token may publish are sent
to Kafka and reported accepted with their position only after the broker
acknowledged them. Every event of the request, valid or not, counts
against the token's rate limit (``CONTINUITY_INGEST_RATE_LIMIT``, or
``..._SERVICE_...`` for service tokens), and is counted before any is judged:
judging is where the CPU goes, so a batch of invalid events is not free. Over
the limit, the whole request is a 429 with ``Retry-After``, nothing is judged
or published. If Kafka does not acknowledge in time the answer is a 503
with ``Retry-After`` and no event is reported accepted; retrying the same
request is safe, the fold skips event ids it already applied.

A customer token whose ``sub`` is a guest that has since signed in (its id is
an alias of a customer's session in Redis) is refused as a whole, ``403
sign_in_required``, as its reads are: its events would follow the alias into
the customer's cart. That takes one Redis read; while Redis cannot answer,
customer tokens get a ``503 redis_unavailable`` rather than an unchecked write.
"""

from __future__ import annotations

from aiohttp import web

from streams.gateway import metrics
from streams.gateway.auth import Principal, Role
from streams.gateway.body import check_media_type, parse_batch
from streams.gateway.errors import KAFKA_UNAVAILABLE, PAYLOAD_TOO_LARGE, ApiError
from streams.gateway.guard import forbidden, principal_of
from streams.gateway.ingest import Accepted, Refused, answer, triage
from streams.gateway.keys import PRODUCER, SESSIONS, SETTINGS
from streams.gateway.middleware import json_response
from streams.gateway.params import Position
from streams.gateway.policy import may_write_as
from streams.gateway.producer import KafkaUnavailable
from streams.gateway.request_body import read_body
from streams.gateway.throttle import ingest_limit, throttle


async def post_events(request: web.Request) -> web.StreamResponse:
    """Publish one event or a batch; 202 / 403 / 422 with a result per event."""
    settings = request.app[SETTINGS]
    check_media_type(request.content_type)
    limit = settings.gateway_max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        raw = await read_body(request)
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    principal = principal_of(request)
    await _refuse_merged_guest(request, principal)
    items = parse_batch(raw, settings.gateway_max_events)
    try:
        await throttle(request, principal, ingest_limit(principal), len(items), fail_open=True)
    except ApiError:
        metrics.INGEST_EVENTS.labels("rejected", "rate_limited").inc(len(items))
        raise
    verdicts = triage(items, principal)
    accepted = [v for v in verdicts if isinstance(v, Accepted)]
    positions: dict[int, Position] = {}
    if accepted:
        try:
            positions = await request.app[PRODUCER].send(accepted)
        except KafkaUnavailable:
            metrics.INGEST_UNAVAILABLE.inc()
            raise ApiError(
                503,
                KAFKA_UNAVAILABLE,
                "Kafka did not acknowledge the events; none is accepted. Retry the request "
                "(event ids make a retry safe)",
                headers={"Retry-After": "2"},
            ) from None
    metrics.INGEST_EVENTS.labels("accepted", "").inc(len(accepted))
    for v in verdicts:
        if isinstance(v, Refused):
            metrics.INGEST_EVENTS.labels("rejected", v.reason).inc()
    status, body = answer(verdicts, positions)
    return json_response(body, status)


async def _refuse_merged_guest(request: web.Request, principal: Principal) -> None:
    """403 ``sign_in_required`` when this customer token's ``sub`` was merged away."""
    if principal.role is not Role.CUSTOMER or principal.subject is None:
        return
    view = await request.app[SESSIONS].view(principal.subject)
    denied = may_write_as(principal, view.merged_into)
    if denied is not None:
        raise forbidden(denied)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        PAYLOAD_TOO_LARGE,
        f"the request body is over the limit of {limit} bytes; send fewer events per request",
        extra={"limit": limit},
    )


def register(app: web.Application) -> None:
    """Add the ingest route."""
    app.router.add_post("/v1/events", post_events, name="events")
