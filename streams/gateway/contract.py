"""What every gateway route accepts and answers, as data. Pure (no I/O).

One entry per route of the application's router (``tests/gateway/test_openapi.py``
fails when a route has none, or an entry no route): who may call it, its
parameters, its body, and each status it answers with the error codes that
status carries. ``streams/gateway/openapi.py`` renders it, with the models of
``schemas/api.py`` and the wire contract, as the OpenAPI 3.1 document served at
``GET /openapi.json``; Schemathesis then holds a live gateway to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from schemas import api
from schemas.events import ID_PATTERN
from streams.gateway import errors as e
from streams.gateway.errors import AS_OF_TIMEOUT, FORBIDDEN, SIGN_IN_REQUIRED

Role = Literal["customer", "pos", "service"]
ALL_ROLES: tuple[Role, ...] = ("customer", "pos", "service")
# The documented defaults of the limits a parameter's schema states.
JOURNEY_MAX_DEFAULT = 200


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter."""

    name: str
    where: Literal["path", "query", "header"]
    description: str
    schema: dict[str, object] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Answer:
    """One status of a route: its body (a model, an error with these codes, or a media
    type of its own) and the headers worth naming."""

    description: str
    # A model of schemas/api.py, the name of another component ("Session"), or several
    # (the body is one of them).
    model: type[BaseModel] | str | tuple[type[BaseModel], ...] | None = None
    codes: tuple[str, ...] = ()
    media: str = "application/json"
    headers: tuple[str, ...] = ()
    # Server-Sent Events: event name -> the component its data is.
    events: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Route:
    """One route: method, path template, who may call it, what it takes and answers."""

    method: Literal["get", "post", "delete"]
    path: str
    name: str
    summary: str
    description: str
    roles: tuple[Role, ...] = ()  # none: public, no token
    params: tuple[Param, ...] = ()
    body: Literal["events", "claim"] | None = None
    body_required: bool = False
    answers: dict[int, Answer] = field(default_factory=dict)
    tag: str = "sessions"


# The headers named by answers (docs/gateway-api.md).
HEADERS: dict[str, str] = {
    "X-Continuity-Version": "the session's version (0 without a session)",
    "ETag": '"<key>:<version>"',
    "X-Continuity-Wait": "satisfied or timeout, when the read waited",
    "X-Continuity-Applied": "topic:partition@offset the state holds, per source topic",
    "X-Continuity-Applied-At": "when a worker last applied a batch there (RFC 3339)",
    "X-Continuity-Workers": "live or none: whether a worker's heartbeat is fresh",
    "Retry-After": "seconds to wait before retrying",
    "WWW-Authenticate": "Bearer",
    "Allow": "the methods the path takes",
}

ID = Param(
    "id",
    "path",
    "a customer_id or anonymous_id (the wire contract's id pattern)",
    {"type": "string", "pattern": f"^{ID_PATTERN}$"},
    required=True,
)
_WAIT = (
    Param("min_version", "query", "wait until the session's version is at least this",
          {"type": "string", "pattern": "^[0-9]+$"}),
    Param("after", "query", "wait until every position topic:partition:offset is applied"),
    Param("wait", "query", "wait at most this long (5, 2.5, 5s); default and cap "
          "CONTINUITY_GATEWAY_MAX_WAIT"),
)  # fmt: skip
_AS_OF = Param(
    "as_of",
    "query",
    "the session as it was then: ISO 8601 or Unix ms, never in the future (pos, service)",
)

_TOKEN = Answer(
    "no usable token",
    codes=(e.MISSING_TOKEN, e.INVALID_TOKEN, e.TOKEN_EXPIRED),
    headers=("WWW-Authenticate",),
)
_SCOPE = Answer("a valid token acting outside its scope", codes=(FORBIDDEN,))
_READ_SCOPE = Answer(
    "outside the token's scope, or a guest token whose guest has signed in",
    codes=(FORBIDDEN, SIGN_IN_REQUIRED),
)
_BAD_ID = Answer("the id breaks the id pattern", codes=(e.INVALID_ID,))
_REDIS = Answer(
    "Redis is down, read-only or full; retry",
    codes=(e.REDIS_UNAVAILABLE,),
    headers=("Retry-After",),
)
_BODY_LIMITS: dict[int, Answer] = {
    408: Answer("the body did not arrive in time", codes=(e.BODY_TIMEOUT,)),
    413: Answer("the body is over the byte limit", codes=(e.PAYLOAD_TOO_LARGE,)),
    417: Answer("an Expect header other than 100-continue", codes=(e.EXPECTATION_FAILED,)),
}
_READ_HEADERS = (
    "X-Continuity-Version",
    "ETag",
    "X-Continuity-Wait",
    "X-Continuity-Applied",
    "X-Continuity-Applied-At",
    "X-Continuity-Workers",
)

ROUTES: tuple[Route, ...] = (
    Route(
        "get", "/", "index", "The service and its routes",
        "A JSON index (in development, CONTINUITY_GATEWAY_DEMO, the demo page instead).",
        answers={200: Answer("the index", api.Index)}, tag="service",
    ),
    Route(
        "get", "/healthz", "healthz", "Liveness", "Answers while the process serves.",
        answers={200: Answer("serving", api.Health)}, tag="service",
    ),
    Route(
        "get", "/readyz", "readyz", "Readiness",
        "Redis (PING), Kafka (metadata) and the shared pub/sub connection, each checked.",
        answers={
            200: Answer("every dependency answers", api.Readiness),
            503: Answer("a dependency is down (checks name it)", codes=(e.NOT_READY,),
                        headers=("Retry-After",)),
        },
        tag="service",
    ),
    Route(
        "get", "/openapi.json", "openapi", "This document",
        "The OpenAPI 3.1 document of every route, generated from the route table.",
        answers={200: Answer("the document")}, tag="service",
    ),
    Route(
        "get", "/v1/sessions/{id}", "session", "Read a session",
        "The session the id resolves to (a merged guest's id leads to its customer). "
        "With min_version, after or wait, read your own writes; with as_of, the past.",
        roles=ALL_ROLES, params=(ID, *_WAIT, _AS_OF),
        answers={
            200: Answer("the session (with as_of: and an as_of object)", "Session",
                        headers=_READ_HEADERS),
            400: Answer("a malformed id or parameter (parameter names it)",
                        codes=(e.INVALID_ID, e.INVALID_PARAMETER)),
            401: _TOKEN, 403: _READ_SCOPE,
            404: Answer("no session for this id (yet)", codes=(e.NOT_FOUND,),
                        headers=("X-Continuity-Version",)),
            503: Answer("Redis or, for as_of, Kafka cannot answer, or the refold ran out "
                        "of time", codes=(e.REDIS_UNAVAILABLE, e.KAFKA_UNAVAILABLE,
                                          AS_OF_TIMEOUT), headers=("Retry-After",)),
        },
    ),
    Route(
        "delete", "/v1/sessions/{id}", "session_erase", "Erase a customer",
        "Deletes the customer's sessions, aliases, journey and handoff codes for good, "
        "and records the erasure on Kafka; repeating it is safe.",
        roles=("service",), params=(ID,),
        answers={
            200: Answer("what was deleted", api.Erased),
            400: _BAD_ID, 401: _TOKEN, 403: _SCOPE,
            503: Answer("the erasure could not be completed now; repeat it",
                        codes=(e.ERASURE_UNAVAILABLE,), headers=("Retry-After",)),
        },
    ),
    Route(
        "get", "/v1/sessions/{id}/journey", "session_journey", "A session's journey",
        "What the customer did on every channel, newest first.",
        roles=ALL_ROLES,
        params=(ID, Param("limit", "query", "how many entries, 1 to CONTINUITY_JOURNEY_MAX_"
                          "ENTRIES (default 200); default 50",
                          {"type": "integer", "minimum": 1, "maximum": JOURNEY_MAX_DEFAULT})),
        answers={
            200: Answer("the journey", api.Journey),
            400: Answer("a malformed id or limit", codes=(e.INVALID_ID, e.INVALID_PARAMETER)),
            401: _TOKEN, 403: _READ_SCOPE,
            404: Answer("neither a session nor a journey", codes=(e.NOT_FOUND,)),
            503: _REDIS,
        },
    ),
    Route(
        "get", "/v1/sessions/{id}/stream", "session_stream", "Follow a session live",
        "Server-Sent Events: `session` (id = version, data = the session JSON) for the "
        "current state unless Last-Event-ID covers it, then every newer version; "
        "`merged` (data: {key, merged_into}) when the guest signs in, and the stream "
        "ends; `token_expired` when the token's exp passes, and the stream ends (reconnect "
        "with a fresh token and last_event_id); `: ping` comments. The token may come as "
        "?access_token= here only.",
        roles=ALL_ROLES,
        params=(
            ID,
            Param("last_event_id", "query", "the version the client has (as Last-Event-ID)",
                  {"type": "string", "pattern": "^[0-9]+$"}),
            Param("Last-Event-ID", "header", "the version the client has",
                  {"type": "string", "pattern": "^[0-9]+$"}),
        ),
        answers={
            200: Answer("the event stream", media="text/event-stream",
                        events=(("session", "Session"), ("merged", "Merged"),
                                ("token_expired", "ErrorBody"))),
            400: Answer("a malformed id or Last-Event-ID", codes=(e.INVALID_ID,
                                                               e.INVALID_PARAMETER)),
            401: _TOKEN, 403: _READ_SCOPE,
            429: Answer("this token's streams are all open on this gateway",
                        codes=(e.TOO_MANY_TOKEN_STREAMS,), headers=("Retry-After",)),
            503: Answer("the gateway is full or live updates are down; retry",
                        codes=(e.TOO_MANY_STREAMS, e.REDIS_UNAVAILABLE),
                        headers=("Retry-After",)),
        },
    ),
    Route(
        "post", "/v1/events", "events", "Publish events",
        "One event (the wire contract) or an array of them. Each is validated and "
        "judged by the token's rules on its own; the accepted ones are on Kafka "
        "(acks=all) when the answer comes.",
        roles=ALL_ROLES, body="events", body_required=True, tag="events",
        answers={
            202: Answer("at least one event accepted", api.IngestAnswer),
            400: Answer("the body is not JSON, not an event or array, empty, or too long",
                        codes=(e.MALFORMED_JSON, e.INVALID_BODY, e.EMPTY_BATCH,
                               e.TOO_MANY_EVENTS)),
            401: _TOKEN,
            403: Answer("the token may publish none of the events (with results), or a "
                        "guest token whose guest has signed in",
                        (api.IngestRefusal, api.ErrorBody),
                        codes=(FORBIDDEN, SIGN_IN_REQUIRED)),
            **_BODY_LIMITS,
            415: Answer("not sent as application/json", codes=(e.UNSUPPORTED_MEDIA_TYPE,)),
            422: Answer("no event was valid", api.IngestRefusal, codes=(e.NO_EVENT_ACCEPTED,)),
            429: Answer("the token is over its rate limit", codes=(e.RATE_LIMITED,),
                        headers=("Retry-After",)),
            503: Answer("Kafka did not acknowledge in time, or Redis cannot tell whether a "
                        "customer token's guest signed in; retry the same request",
                        codes=(e.KAFKA_UNAVAILABLE, e.REDIS_UNAVAILABLE),
                        headers=("Retry-After",)),
        },
    ),
    Route(
        "post", "/v1/sessions/{id}/handoff", "handoff_create", "Hand a session to a POS",
        "A one-time code a POS claims (customer tokens for their own session, service).",
        roles=("customer", "service"), params=(ID,), tag="handoff",
        answers={
            201: Answer("the code", api.HandoffCreated),
            400: _BAD_ID, 401: _TOKEN, 403: _READ_SCOPE,
            404: Answer("no session to hand off (yet)", codes=(e.NOT_FOUND,)),
            429: Answer("the token is over its rate limit for new codes",
                        codes=(e.RATE_LIMITED,), headers=("Retry-After",)),
            503: _REDIS,
        },
    ),
    Route(
        "post", "/v1/handoffs/{code}/claim", "handoff_claim", "Claim a handoff code",
        "Takes the code (single use, any gateway), publishes checkout.handoff_claimed "
        "for the token's store and answers the session.",
        roles=("pos",), tag="handoff", body="claim",
        params=(Param("code", "path", "the code as shown, typed or scanned", required=True),),
        answers={
            200: Answer("claimed", api.HandoffClaimAnswer),
            400: Answer("not a code, or a malformed body",
                        codes=(e.INVALID_CODE, e.MALFORMED_JSON, e.INVALID_BODY)),
            401: _TOKEN, 403: _SCOPE,
            404: Answer("no such code", codes=(e.HANDOFF_NOT_FOUND,)),
            **_BODY_LIMITS,
            410: Answer("the code expired or was claimed",
                        codes=(e.HANDOFF_EXPIRED, e.HANDOFF_CLAIMED)),
            429: Answer("too many failed claims, or over the claim rate limit",
                        codes=(e.TOO_MANY_FAILED_CLAIMS, e.RATE_LIMITED),
                        headers=("Retry-After",)),
            503: Answer("Redis or Kafka cannot take the claim now, or too few replicas "
                        "confirmed it; retry",
                        codes=(e.REDIS_UNAVAILABLE, e.KAFKA_UNAVAILABLE,
                               e.HANDOFF_UNCONFIRMED), headers=("Retry-After",)),
        },
    ),
    Route(
        "get", "/v1/kpis", "kpis", "Omnichannel KPIs",
        "Multichannel share, resumes, conversion and abandonment by start channel and "
        "path, first touch to checkout (service tokens only).",
        roles=("service",), tag="kpis",
        answers={200: Answer("the KPIs", api.Kpis), 401: _TOKEN, 403: _SCOPE, 503: _REDIS},
    ),
)  # fmt: skip

# Answers every route may give besides its own: a method it does not take, and a bug.
COMMON: dict[int, Answer] = {
    405: Answer("the path does not take this method", codes=(e.METHOD_NOT_ALLOWED,),
                headers=("Allow",)),
    500: Answer("a bug (logged with the route, never the query)", codes=(e.INTERNAL,)),
}  # fmt: skip

# Routes of development only (the demo page's assets): not part of the contract.
DEVELOPMENT_ONLY = frozenset({"demo", "demo_asset"})
