"""Errors are part of the interface: one status, one code, one message. Pure (no I/O).

Every error response has the body ``{"error": <code>, "message": <text>}``
(plus fields of its own where noted in the README's error table). Handlers
raise ``ApiError``; the error middleware renders it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The codes, by status (docs/gateway-api.md, Errors).
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
