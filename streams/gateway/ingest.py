"""Per-event verdicts of an ingest request and the answer built from them. Pure (no I/O).

Each event is checked by the very function the worker decodes with
(``streams.decode.decode``), so the gateway accepts exactly what the worker
can fold, then by ``policy.may_ingest``. An accepted event is addressed as
every producer addresses it: topic by type, key = customer key.

A rejection's ``reason`` is a dead-letter reason of the wire contract
(``oversized``, ``malformed_json``, ``unknown_type``, ``invalid_event``) or
``forbidden``. Acceptance means the broker acknowledged the record; the worker
may still find it does not fit the session (``currency_mismatch`` and the
like) and dead-letter it, as for any producer.

Every record published for an ingest request carries the header
``continuity-role``: the role of the token that asserted it (``customer``,
``pos``, ``service``). The fold ignores it; whoever reads the topics (the
order system, an audit) can tell a price a device showed from one a till or
the platform set (docs/security.md, Who may say what).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.topics import topic_for
from streams.core.decode import decode
from streams.core.fold import Rejected
from streams.gateway.auth import Principal
from streams.gateway.errors import NO_EVENT_ACCEPTED
from streams.gateway.params import Position, newest_per_partition
from streams.gateway.policy import FORBIDDEN, may_ingest

_MAX_ECHOED_ID = 128
# The Kafka record header naming the role of the token that asserted the event.
ROLE_HEADER = "continuity-role"


@dataclass(frozen=True)
class Accepted:
    """A valid event this principal may publish, addressed for Kafka."""

    index: int
    event_id: str
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Refused:
    """An event that is not published, and why."""

    index: int
    event_id: str | None
    reason: str
    detail: str


Verdict = Accepted | Refused


def triage(items: Sequence[Any], principal: Principal) -> list[Verdict]:
    """Judge every element of a request body on its own."""
    verdicts: list[Verdict] = []
    headers = ((ROLE_HEADER, principal.role.value.encode()),)
    for index, item in enumerate(items):
        try:
            raw = orjson.dumps(item)
        except orjson.JSONEncodeError:
            # orjson reads 1024 levels of nesting but writes only 254.
            verdicts.append(Refused(index, _echo_id(item), "malformed_json", "nested too deeply"))
            continue
        event = decode(raw)
        if isinstance(event, Rejected):
            verdicts.append(Refused(index, _echo_id(item), event.reason.value, event.detail))
            continue
        denied = may_ingest(principal, event)
        if denied is not None:
            verdicts.append(Refused(index, event.event_id, FORBIDDEN, denied.message))
            continue
        verdicts.append(
            Accepted(
                index,
                event.event_id,
                topic_for(event.type),  # type: ignore[attr-defined]
                event.routing_key.encode(),
                raw,
                headers,
            )
        )
    return verdicts


def answer(
    verdicts: Sequence[Verdict], positions: Mapping[int, Position]
) -> tuple[int, dict[str, Any]]:
    """Status and body: 202 if any event was accepted, else 403 (all forbidden) or 422.

    ``positions`` maps the index of each accepted event to where Kafka put it.
    """
    results: list[dict[str, Any]] = []
    for v in verdicts:
        if isinstance(v, Accepted):
            results.append(
                {
                    "index": v.index,
                    "event_id": v.event_id,
                    "status": "accepted",
                    "position": str(positions[v.index]),
                }
            )
        else:
            results.append(
                {
                    "index": v.index,
                    "event_id": v.event_id,
                    "status": "rejected",
                    "reason": v.reason,
                    "detail": v.detail,
                }
            )
    accepted = sum(isinstance(v, Accepted) for v in verdicts)
    body: dict[str, Any] = {"accepted": accepted, "rejected": len(verdicts) - accepted}
    if accepted:
        newest = newest_per_partition(list(positions.values()))
        body["after"] = ",".join(str(p) for p in newest)
        body["results"] = results
        return 202, body
    if all(isinstance(v, Refused) and v.reason == FORBIDDEN for v in verdicts):
        head = {"error": FORBIDDEN, "message": "this token may not publish any of these events"}
        return 403, {**head, **body, "results": results}
    head = {"error": NO_EVENT_ACCEPTED, "message": "no event was valid; see results"}
    return 422, {**head, **body, "results": results}


def _echo_id(item: Any) -> str | None:
    """The ``event_id`` of an invalid element when it has a usable one (bounded)."""
    if isinstance(item, dict):
        value = item.get("event_id")
        if isinstance(value, str):
            return value[:_MAX_ECHOED_ID]
    return None
