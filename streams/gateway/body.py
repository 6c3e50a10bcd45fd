"""The body of ``POST /v1/events``: one event object or a non-empty array of them. Pure.

Only the shape of the request is judged here (400s); each element is judged
on its own afterwards by the wire contract (``streams.gateway.ingest``), so one bad
event never spoils the others.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.gateway.errors import (
    EMPTY_BATCH,
    INVALID_BODY,
    MALFORMED_JSON,
    TOO_MANY_EVENTS,
    UNSUPPORTED_MEDIA_TYPE,
    ApiError,
)

JSON_MEDIA_TYPE = "application/json"


def check_media_type(content_type: str) -> None:
    """Refuse anything but ``application/json`` (parameters such as charset aside) with a 415."""
    if content_type.lower() != JSON_MEDIA_TYPE:
        raise ApiError(
            415, UNSUPPORTED_MEDIA_TYPE, "send the events with Content-Type: application/json"
        )


def parse_batch(raw: bytes, max_events: int) -> list[Any]:
    """The events of a body, each still an unchecked JSON value; a 400 when the shape is wrong."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, MALFORMED_JSON, f"the body is not valid JSON: {exc}"[:300]) from None
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise ApiError(400, INVALID_BODY, "the body must be one event object or an array of them")
    if not value:
        raise ApiError(400, EMPTY_BATCH, "the array holds no event")
    if len(value) > max_events:
        raise ApiError(
            400,
            TOO_MANY_EVENTS,
            f"{len(value)} events in one request; at most {max_events}",
            extra={"limit": max_events},
        )
    return value
