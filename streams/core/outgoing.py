"""Addressing events for Kafka: topic by type, key by customer. Pure.

Shared by the publisher (``streams/kafka/publish.py``) and the dead-letter repair
rules (``streams/core/dlq_repair.py``), which must stay free of Kafka clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from schemas.topics import topic_for
from streams.core.decode import decode
from streams.core.fold import Rejected


@dataclass(frozen=True)
class Outgoing:
    """A Kafka record ready to send."""

    topic: str
    key: bytes
    value: bytes


def prepare(value: bytes) -> Outgoing | Rejected:
    """Validate one event and address it: topic by type, key = customer key."""
    event = decode(value)
    if isinstance(event, Rejected):
        return event
    return Outgoing(topic_for(event.type), event.routing_key.encode(), value)  # type: ignore[attr-defined]


def prepare_dict(event: dict[str, Any]) -> Outgoing:
    """Address an event given as a dict; raises ``ValueError`` if it breaks the contract."""
    out = prepare(orjson.dumps(event))
    if isinstance(out, Rejected):
        raise ValueError(f"{out.reason.value}: {out.detail}")
    return out
