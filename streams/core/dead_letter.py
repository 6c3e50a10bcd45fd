"""The dead-letter record format. Pure.

A dead letter keeps the original key and the original value bytes untouched;
why and where it came from travel in headers, in the style of Kafka Connect's
error headers, so a repaired event can be re-published byte for byte.
Delivery to the DLQ is at-least-once: a consumer of ``events-dlq`` may see the
same source record twice and can deduplicate on (topic, partition, offset).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.records import (
    DLQ_DETAIL_HEADER,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
)
from schemas.topics import REPLAYED_FROM_HEADER
from streams.core.plan import RecordOutcome

REASON = DLQ_REASON_HEADER
DETAIL = DLQ_DETAIL_HEADER
TOPIC = DLQ_TOPIC_HEADER
PARTITION = DLQ_PARTITION_HEADER
OFFSET = DLQ_OFFSET_HEADER


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def dead_letter(outcome: RecordOutcome) -> DeadLetter:
    """The DLQ record for a rejected record."""
    rec = outcome.record
    reason = outcome.reason.value if outcome.reason else "unknown"
    return DeadLetter(
        key=rec.key,
        value=rec.value or b"",
        headers=[
            (REASON, reason.encode()),
            (DETAIL, outcome.detail.encode("utf-8", "replace")),
            (TOPIC, rec.topic.encode()),
            (PARTITION, str(rec.partition).encode()),
            (OFFSET, str(rec.offset).encode()),
        ],
    )


def replayed_from(headers: object) -> str | None:
    """The dead letter a record repairs, from its ``continuity.replayed-from`` header.

    Kafka clients hand headers over as a sequence of (name, bytes) pairs or as a
    mapping; anything unreadable counts as no mark (the mark is informational).
    """
    pairs: Iterable[Any]
    if isinstance(headers, Mapping):
        pairs = headers.items()
    elif isinstance(headers, list | tuple):
        pairs = headers
    else:
        return None
    for pair in pairs:
        if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == REPLAYED_FROM_HEADER:
            value = pair[1]
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            return text[:128]
    return None


def describe(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    """Headers of a dead letter as a plain dict (for tools and tests)."""
    return {k: v.decode("utf-8", "replace") for k, v in headers if k.startswith("continuity.dlq.")}
