"""The dead-letter record format (``schemas/dead_letter.py``). Pure.

A dead letter keeps the original key and the original value bytes untouched;
why and where it came from travel in headers, in the style of Kafka Connect's
error headers, so a repaired event can be re-published byte for byte.
Delivery to the DLQ is at-least-once: a consumer of ``events-dlq`` may see the
same source record twice and can deduplicate on (topic, partition, offset).

A copy too large for the producer's or the broker's record limit would be
refused on every retry, and the worker holds a partition until its dead
letters are accepted: such a record is dead-lettered as a reference (its
position, size and reason) instead, which always fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.dead_letter import (
    DETAIL_HEADER,
    KIND_HEADER,
    MAX_REFERENCE_KEY_BYTES,
    OFFSET_HEADER,
    PARTITION_HEADER,
    REASON_HEADER,
    REFERENCE_KIND,
    SIZE_HEADER,
    TOPIC_HEADER,
    DeadLetterReference,
)
from schemas.topics import REPLAYED_FROM_HEADER
from streams.core.plan import RecordOutcome

REASON = REASON_HEADER
DETAIL = DETAIL_HEADER
TOPIC = TOPIC_HEADER
PARTITION = PARTITION_HEADER
OFFSET = OFFSET_HEADER
KIND = KIND_HEADER
SIZE = SIZE_HEADER

# The default record limit (``CONTINUITY_DEAD_LETTER_MAX_BYTES``): Faust's producer
# refuses a record above 1,000,000 bytes, and Kafka's own default
# (``message.max.bytes``, 1,048,588) is just above it.
DEFAULT_MAX_BYTES = 1_000_000
# What one record in a batch of its own adds to its key, value and headers, at most:
# the batch header (61 bytes) and the record's and each header's length varints.
_BATCH_OVERHEAD = 61 + 21
_HEADER_OVERHEAD = 10


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    # A reference to the source record, not a copy of it.
    reference: bool = False

    @property
    def size(self) -> int:
        """Its size in a record batch, at most (as a producer estimates it)."""
        return record_size(self.key, self.value, self.headers)


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """An upper bound of a record's size in a batch of one, as producers check it."""
    body = len(key or b"") + len(value or b"")
    return _BATCH_OVERHEAD + body + sum(_HEADER_OVERHEAD + len(k) + len(v) for k, v in headers)


def dead_letter(
    outcome: RecordOutcome,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    refused: str | None = None,
) -> DeadLetter:
    """The DLQ record for a rejected record: a copy when it fits in ``max_bytes``, else a
    reference. ``refused``: the broker refused a copy already (why): a reference."""
    copy = _copy(outcome)
    if refused is None and copy.size <= max_bytes:
        return copy
    why = refused or f"a copy would be {copy.size} bytes, over the limit of {max_bytes}"
    return _reference(outcome, why)


def _headers(outcome: RecordOutcome) -> list[tuple[str, bytes]]:
    rec = outcome.record
    reason = outcome.reason.value if outcome.reason else "unknown"
    return [
        (REASON, reason.encode()),
        (DETAIL, outcome.detail.encode("utf-8", "replace")),
        (TOPIC, rec.topic.encode()),
        (PARTITION, str(rec.partition).encode()),
        (OFFSET, str(rec.offset).encode()),
    ]


def _copy(outcome: RecordOutcome) -> DeadLetter:
    rec = outcome.record
    return DeadLetter(key=rec.key, value=rec.value or b"", headers=_headers(outcome))


def _reference(outcome: RecordOutcome, why: str) -> DeadLetter:
    rec = outcome.record
    size = len(rec.value or b"")
    key_bytes = len(rec.key or b"")
    # The detail is bounded by decode (500 characters); a fold's detail is short too.
    detail = outcome.detail[:500]
    value = DeadLetterReference(
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        size=size,
        key_bytes=key_bytes,
        reason=outcome.reason.value if outcome.reason else "unknown",
        detail=detail,
        why_reference=why[:500],
        timestamp_ms=rec.timestamp_ms,
    )
    headers = [
        *[(k, v[:2000]) for k, v in _headers(outcome)],
        (KIND, REFERENCE_KIND.encode()),
        (SIZE, str(size).encode()),
    ]
    key = rec.key if key_bytes <= MAX_REFERENCE_KEY_BYTES else None
    return DeadLetter(key, value.model_dump_json().encode(), headers, reference=True)


def is_reference(headers: Iterable[tuple[str, bytes]]) -> bool:
    """Whether a dead letter's headers mark it a reference to its source record."""
    return any(k == KIND and v == REFERENCE_KIND.encode() for k, v in headers)


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
