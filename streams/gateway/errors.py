"""Errors are part of the interface: one status, one code, one message. Pure (no I/O).

Every error response has the body ``{"error": <code>, "message": <text>}``
(plus fields of its own where noted in ``ERRORS``). Handlers raise
``ApiError``; the error middleware renders it. ``ERRORS`` is the one table of
codes, statuses and meanings: the manual's (docs/gateway-api.md, Errors) is
rendered from it, and the OpenAPI document's answers must agree with it
(``tests/gateway/test_openapi.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The codes, by status (``ERRORS`` below).
INVALID_ID = "invalid_id"  # 400
INVALID_PARAMETER = "invalid_parameter"  # 400
MALFORMED_JSON = "malformed_json"  # 400
INVALID_BODY = "invalid_body"  # 400
EMPTY_BATCH = "empty_batch"  # 400
TOO_MANY_EVENTS = "too_many_events"  # 400
INVALID_CODE = "invalid_code"  # 400
MISSING_TOKEN = "missing_token"  # 401
INVALID_TOKEN = "invalid_token"  # 401
TOKEN_EXPIRED = "token_expired"  # 401
NOT_FOUND = "not_found"  # 404
HANDOFF_NOT_FOUND = "handoff_not_found"  # 404
HANDOFF_EXPIRED = "handoff_expired"  # 410
HANDOFF_CLAIMED = "handoff_claimed"  # 410
HANDOFF_UNCONFIRMED = "handoff_unconfirmed"  # 503: no replica confirmed the claim in time
METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
BODY_TIMEOUT = "body_timeout"  # 408
PAYLOAD_TOO_LARGE = "payload_too_large"  # 413
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
EXPECTATION_FAILED = "expectation_failed"  # 417
NO_EVENT_ACCEPTED = "no_event_accepted"  # 422
TOO_MANY_FAILED_CLAIMS = "too_many_failed_claims"  # 429
RATE_LIMITED = "rate_limited"  # 429
TOO_MANY_TOKEN_STREAMS = "too_many_token_streams"  # 429: this token's streams are all open
INTERNAL = "internal"  # 500
KAFKA_UNAVAILABLE = "kafka_unavailable"  # 503
REDIS_UNAVAILABLE = "redis_unavailable"  # 503
TOO_MANY_STREAMS = "too_many_streams"  # 503
ERASURE_UNAVAILABLE = "erasure_unavailable"  # 503
NOT_READY = "not_ready"  # 503
FORBIDDEN = "forbidden"  # 403
SIGN_IN_REQUIRED = "sign_in_required"  # 403
AS_OF_TIMEOUT = "as_of_timeout"  # 503

# What aiohttp's own HTTP exceptions (routing, body size, the Expect check) become.
CODE_BY_STATUS: Mapping[int, str] = {
    400: INVALID_PARAMETER,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    413: PAYLOAD_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
    417: EXPECTATION_FAILED,
}


class ApiError(Exception):
    """An answer other than success, raised by handlers and rendered as JSON."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """The JSON body: ``error`` and ``message`` first, then any extra fields."""
        return {"error": self.code, "message": self.message, **self.extra}


@dataclass(frozen=True)
class ErrorRow:
    """Codes answered with one status for one kind of reason, and when."""

    status: int
    codes: tuple[str, ...]
    when: str


ERRORS: tuple[ErrorRow, ...] = (
    ErrorRow(400, (INVALID_ID,), "`{id}` breaks the id pattern"),
    ErrorRow(
        400,
        (INVALID_PARAMETER,),
        "`min_version`, `after`, `wait`, `as_of` or the journey's `limit` malformed "
        "(`parameter` names it)",
    ),
    ErrorRow(
        400,
        (MALFORMED_JSON, INVALID_BODY, EMPTY_BATCH, TOO_MANY_EVENTS),
        "the ingest body is not JSON, not an object or array, an empty array, or over the "
        "event limit (`limit`); `malformed_json` also when a body (ingest, a claim's) cannot "
        "be decoded or the client hung up before it was complete",
    ),
    ErrorRow(400, (INVALID_CODE,), "a handoff code that cannot be one"),
    ErrorRow(
        401,
        (MISSING_TOKEN, INVALID_TOKEN, TOKEN_EXPIRED),
        "no usable token (with `WWW-Authenticate: Bearer`): also an unknown `kid`, no `iat`, "
        "or `exp - iat` over the role's cap",
    ),
    ErrorRow(
        403,
        (FORBIDDEN, SIGN_IN_REQUIRED),
        "a valid token acting outside its scope (per event on ingest); a merged guest's "
        "token, reading or writing",
    ),
    ErrorRow(
        404,
        (NOT_FOUND,),
        "no such session (yet), no session nor journey (journey), or no such route",
    ),
    ErrorRow(404, (HANDOFF_NOT_FOUND,), "no such handoff code"),
    ErrorRow(405, (METHOD_NOT_ALLOWED,), "with `Allow`"),
    ErrorRow(
        408,
        (BODY_TIMEOUT,),
        "a request body (ingest, a claim's) not fully received within "
        "`CONTINUITY_GATEWAY_BODY_TIMEOUT` (default 10 s) of its handler reading it; the "
        "connection is closed after the answer",
    ),
    ErrorRow(410, (HANDOFF_EXPIRED, HANDOFF_CLAIMED), "see Handing a session to a POS"),
    ErrorRow(
        413,
        (PAYLOAD_TOO_LARGE,),
        "body over the byte limit (`limit`), with or without a Content-Length",
    ),
    ErrorRow(415, (UNSUPPORTED_MEDIA_TYPE,), "ingest not sent as `application/json`"),
    ErrorRow(417, (EXPECTATION_FAILED,), "an `Expect` header other than `100-continue`"),
    ErrorRow(422, (NO_EVENT_ACCEPTED,), "no event of the request was valid"),
    ErrorRow(
        429,
        (TOO_MANY_FAILED_CLAIMS,),
        "handoff claims of this token, store or address locked out, with `Retry-After`",
    ),
    ErrorRow(
        429,
        (RATE_LIMITED,),
        "the token is over an ingest, claim or handoff-issuing rate limit, with "
        "`Retry-After`, `retry_after` and `limit`",
    ),
    ErrorRow(
        429,
        (TOO_MANY_TOKEN_STREAMS,),
        "the token holds `CONTINUITY_SSE_MAX_STREAMS_PER_TOKEN` streams of this gateway "
        "already, with `Retry-After`, `retry_after` and `limit`",
    ),
    ErrorRow(500, (INTERNAL,), "a bug (logged with the route, never the query)"),
    ErrorRow(
        503,
        (
            KAFKA_UNAVAILABLE,
            REDIS_UNAVAILABLE,
            TOO_MANY_STREAMS,
            NOT_READY,
            ERASURE_UNAVAILABLE,
            HANDOFF_UNCONFIRMED,
        ),
        "a dependency is down, read-only or full (`redis_unavailable` during a Redis "
        "failover: reads go on, writes wait), or the gateway is full, with `Retry-After`",
    ),
    ErrorRow(
        503,
        (AS_OF_TIMEOUT,),
        "an `as_of` refold took longer than `CONTINUITY_AS_OF_TIMEOUT`; use "
        "`continuity session show ID --as-of T`",
    ),
)


def status_of(code: str) -> int:
    """The status ``code`` is answered with (``ERRORS``); KeyError for no such code."""
    for row in ERRORS:
        if code in row.codes:
            return row.status
    raise KeyError(code)


def markdown_table() -> str:
    """``ERRORS`` as the manual's table."""
    rows = ["| status | `error` | when |", "|---|---|---|"]
    for row in ERRORS:
        codes = ", ".join(f"`{c}`" for c in row.codes)
        rows.append(f"| {row.status} | {codes} | {row.when} |")
    return "\n".join(rows) + "\n"
