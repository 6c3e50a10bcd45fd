"""POS handoff: a shopper's code lets a store's POS take the session over.

``POST /v1/sessions/{id}/handoff`` (the customer's own token, or ``service``;
rate-limited per token) issues a single-use code that lives
``CONTINUITY_HANDOFF_TTL`` seconds in Redis, revoking the session's oldest
pending codes past ``CONTINUITY_HANDOFF_MAX_PENDING``.
``POST /v1/handoffs/{code}/claim`` (``pos`` only) takes it atomically,
publishes ``checkout.handoff_claimed`` (channel ``pos``, the token's store)
and answers with the session. Failed claims count against the token, the
store and (behind a trusted proxy only) the client address; past a limit
every claim of them is a 429 for the rest of the window
(``streams.gateway.handoff``).

A claim whose event Kafka did not acknowledge may have landed all the same.
The code is then held for that claimer: its retry (same store and terminal)
publishes the claim again under the same event id, so the session applies one
claim whether the first landed or not, and the till gets its 200; any other
claimer is told the code is claimed. The code is never free to claim again.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from schemas.events import Id
from schemas.topics import topic_for
from streams.core.decode import decode
from streams.core.fold import Rejected
from streams.gateway import handoff, metrics
from streams.gateway.auth import Principal, Role
from streams.gateway.body import check_media_type
from streams.gateway.errors import (
    HANDOFF_CLAIMED,
    HANDOFF_EXPIRED,
    HANDOFF_NOT_FOUND,
    HANDOFF_UNCONFIRMED,
    INVALID_BODY,
    INVALID_CODE,
    KAFKA_UNAVAILABLE,
    MALFORMED_JSON,
    NOT_FOUND,
    TOO_MANY_FAILED_CLAIMS,
    ApiError,
)
from streams.gateway.guard import forbidden, principal_of
from streams.gateway.ingest import Accepted
from streams.gateway.keys import HANDOFFS, PRODUCER, SESSIONS, SETTINGS
from streams.gateway.middleware import json_response
from streams.gateway.params import Position, session_id
from streams.gateway.policy import FORBIDDEN, Denied, may_read
from streams.gateway.producer import KafkaUnavailable
from streams.gateway.rate_limit import identity
from streams.gateway.request_body import read_body
from streams.gateway.throttle import throttle
from streams.store.handoffs import Gone, LockedOut, Taken, Ticket, Unconfirmed

CLAIMED_TYPE = "checkout.handoff_claimed"
# A fresh 40-bit code colliding with a pending one is rare; five in a row is a bug.
_DRAWS = 5
_ID = TypeAdapter(Id)
_GONE: dict[str, tuple[int, str, str]] = {
    "unknown": (404, HANDOFF_NOT_FOUND, "no such handoff code; check it with the shopper"),
    "expired": (410, HANDOFF_EXPIRED, "this handoff code has expired; ask for a new one"),
    "claimed": (410, HANDOFF_CLAIMED, "this handoff code was already claimed; it is single-use"),
}


async def create_handoff(request: web.Request) -> web.StreamResponse:
    """Issue a code for the session ``{id}`` resolves to (201)."""
    sid = session_id(request.match_info["id"])
    principal = principal_of(request)
    if principal.role is Role.POS:
        raise forbidden(Denied(FORBIDDEN, "a pos token claims handoff codes; it cannot issue one"))
    app = request.app
    view = await app[SESSIONS].locate(sid)
    denied = may_read(principal, sid, view.key)
    if denied is not None:
        raise forbidden(denied)
    if view.session is None:
        raise ApiError(404, NOT_FOUND, "no session to hand off (yet)")
    limit = "handoff-service" if principal.role is Role.SERVICE else "handoff"
    await throttle(request, principal, limit, 1, fail_open=False)
    customer_id = view.session.customer_id
    ticket = Ticket(
        view.key, customer_id, None if customer_id else view.key, nonce=secrets.token_hex(6)
    )
    settings = app[SETTINGS]
    ttl = settings.handoff_ttl
    # In the session's partition: the code's keys share the session's slot.
    space = settings.space()
    partition = space.partition(view.key)
    for _ in range(_DRAWS):
        code = handoff.code_in_partition(partition, space.partitions)
        issued = await app[HANDOFFS].create(code, ticket, ttl, settings.handoff_max_pending)
        if issued is not None:
            break
    else:
        raise RuntimeError("could not draw an unused handoff code")
    metrics.HANDOFFS.labels("created").inc()
    if issued.revoked:
        metrics.HANDOFFS.labels("revoked").inc(len(issued.revoked))
    expires_at = datetime.fromtimestamp(time.time() + ttl, UTC)
    body = {
        "code": code,
        "display": handoff.display(code),
        "qr": handoff.qr_payload(code),
        "expires_in": ttl,
        "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
        "claim": f"/v1/handoffs/{code}/claim",
        "key": view.key,
    }
    return json_response(body, 201, headers={"Cache-Control": "no-store"})


async def claim_handoff(request: web.Request) -> web.StreamResponse:
    """Take a code (pos only): publish the claim, answer with the session (200)."""
    principal = principal_of(request)
    if principal.role is not Role.POS or principal.store is None:
        raise forbidden(Denied(FORBIDDEN, "only a pos token may claim a handoff code"))
    code = handoff.normalize_code(request.match_info["code"])
    if code is None:
        raise ApiError(
            400,
            INVALID_CODE,
            f"a handoff code is {handoff.CODE_LENGTH} characters of Crockford base32 "
            "(dashes and spaces ignored)",
        )
    await throttle(request, principal, "claim", 1, fail_open=False)
    terminal_id = await _terminal_id(request)
    app = request.app
    settings = app[SETTINGS]
    store = app[HANDOFFS]
    limit = handoff.ClaimLimit(
        settings.handoff_max_failures,
        settings.handoff_store_max_failures,
        settings.handoff_failure_window,
    )
    counters = [
        store.token_counter(principal.store, principal.subject, limit.max_failures),
        store.store_counter(principal.store, limit.store_max_failures),
    ]
    address = handoff.client_address(
        request.remote,
        request.headers.getall("X-Forwarded-For", []),
        handoff.parse_networks(settings.trusted_proxies),
    )
    if address is not None:
        counters.append(store.address_counter(address, limit.store_max_failures))
    guess = await store.reserve_guess(counters, limit.window)
    if isinstance(guess, LockedOut):
        wait = limit.retry_after(guess.ttl_ms)
        metrics.HANDOFFS.labels("refused").inc()
        raise ApiError(
            429,
            TOO_MANY_FAILED_CLAIMS,
            f"too many failed claims from this token, store or address; retry in {wait} s",
            headers={"Retry-After": str(wait)},
            extra={"retry_after": wait},
        )
    claimer = identity(principal)
    failed = False
    try:
        taken = await store.claim(
            code, claimer, settings.handoff_min_replicas, settings.handoff_replica_timeout_ms
        )
        if isinstance(taken, Unconfirmed):
            metrics.HANDOFFS.labels("unconfirmed").inc()
            raise ApiError(
                503,
                HANDOFF_UNCONFIRMED,
                f"the claim reached {taken.acked} of {settings.handoff_min_replicas} Redis "
                "replicas in time and was undone; retry shortly",
                headers={"Retry-After": "1"},
            )
        if isinstance(taken, Gone):
            # The reservation stands: it was a failed guess.
            failed = True
            metrics.HANDOFFS.labels("expired_or_unknown").inc()
            status, error, message = _GONE[taken.why]
            raise ApiError(status, error, message)
    finally:
        if not failed:
            await store.release_guess(guess)
    position = await _publish_claim(request, principal, taken, code, terminal_id)
    view = await app[SESSIONS].locate(taken.ticket.key)
    metrics.HANDOFFS.labels("claimed").inc()
    body = {
        "claimed": True,
        "key": taken.ticket.key,
        "customer_id": taken.ticket.customer_id,
        "store_id": principal.store,
        "terminal_id": terminal_id,
        # Read the session with ?after= this position to see the claim applied.
        "after": str(position),
        "session": view.session.public() if view.session is not None else None,
    }
    return json_response(body, headers={"Cache-Control": "no-store"})


async def _terminal_id(request: web.Request) -> str | None:
    """The optional ``{"terminal_id": ...}`` body of a claim."""
    if not request.body_exists:
        return None
    raw = await read_body(request)
    if not raw.strip():
        return None
    check_media_type(request.content_type)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, MALFORMED_JSON, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, INVALID_BODY, 'the body must be an object, {"terminal_id": ...}')
    terminal = value.get("terminal_id")
    if terminal is None:
        return None
    try:
        return _ID.validate_python(terminal)
    except ValidationError:
        raise ApiError(
            400, INVALID_BODY, "terminal_id must match [A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}"
        ) from None


async def _publish_claim(
    request: web.Request,
    principal: Principal,
    taken: Taken,
    code: str,
    terminal_id: str | None,
) -> Position:
    """Publish ``checkout.handoff_claimed``; on a Kafka failure the code is pending again."""
    ticket = taken.ticket
    # Every attempt at one code's claim carries one event id: the fold applies it once.
    nonce = ticket.nonce or uuid.uuid4().hex[:12]
    event: dict[str, Any] = {
        "event_id": f"handoff-{code}-{nonce}",
        "type": CLAIMED_TYPE,
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "channel": "pos",
        "store_id": principal.store,
        "payload": {"terminal_id": terminal_id} if terminal_id else {},
    }
    if ticket.customer_id:
        event["customer_id"] = ticket.customer_id
    if ticket.anonymous_id:
        event["anonymous_id"] = ticket.anonymous_id
    raw = orjson.dumps(event)
    decoded = decode(raw)
    if isinstance(decoded, Rejected):
        # The gateway built this event itself: the contract refusing it is a bug.
        raise RuntimeError(f"the claim event breaks the contract: {decoded.detail}")
    record = Accepted(
        0, decoded.event_id, topic_for(CLAIMED_TYPE), decoded.routing_key.encode(), raw
    )
    try:
        positions = await request.app[PRODUCER].send([record])
    except KafkaUnavailable:
        # The event may have landed: only this claimer may retry, under the same id.
        await request.app[HANDOFFS].hold(code, taken, identity(principal))
        raise ApiError(
            503,
            KAFKA_UNAVAILABLE,
            "Kafka did not acknowledge the claim; the code is held for this store and "
            "terminal: retry the claim with the same token",
            headers={"Retry-After": "2"},
        ) from None
    return positions[0]


def register(app: web.Application) -> None:
    """Add the two handoff routes."""
    app.router.add_post("/v1/sessions/{id}/handoff", create_handoff, name="handoff_create")
    app.router.add_post("/v1/handoffs/{code}/claim", claim_handoff, name="handoff_claim")
