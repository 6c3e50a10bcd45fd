"""Raw message bytes -> validated event, or the reason it cannot be one. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.events import EVENT_ADAPTER, AnyEvent
from streams.core.fold import Reason, Rejected

MAX_EVENT_BYTES = 64 * 1024
_MAX_DETAIL = 500


def decode(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> AnyEvent | Rejected:
    """Validate one message value against the wire contract.

    Never raises: whatever the bytes, the answer is an event or a ``Rejected``
    whose reason is one of ``oversized``, ``malformed_json``, ``unknown_type``
    or ``invalid_event`` with a short, bounded detail.
    """
    if raw is None:
        return Rejected(Reason.MALFORMED_JSON, "message has no value")
    if len(raw) > max_bytes:
        return Rejected(Reason.OVERSIZED, f"{len(raw)} bytes > limit of {max_bytes}")
    try:
        event: AnyEvent = EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        return _rejection(exc)
    except (ValueError, RecursionError) as exc:  # pragma: no cover - defensive, pydantic wraps
        return Rejected(Reason.MALFORMED_JSON, str(exc)[:_MAX_DETAIL])
    return event


def _rejection(exc: ValidationError) -> Rejected:
    errors = exc.errors(include_url=False, include_input=False)
    kinds = {e["type"] for e in errors}
    if "json_invalid" in kinds or "json_type" in kinds:
        return Rejected(Reason.MALFORMED_JSON, _describe(errors))
    if kinds == {"union_tag_not_found"}:
        return Rejected(Reason.INVALID_EVENT, "type: field required (a string naming the event)")
    if kinds == {"union_tag_invalid"}:
        return Rejected(Reason.UNKNOWN_TYPE, _describe(errors))
    return Rejected(Reason.INVALID_EVENT, _describe(errors))


def _describe(errors: Sequence[ErrorDetails]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {e.get('msg', '')}")
    return "; ".join(parts)[:_MAX_DETAIL]
