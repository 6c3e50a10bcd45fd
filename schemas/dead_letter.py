"""The ``events-dlq`` topic (part of the wire contract).

A dead letter is a record the worker could not fold: its reason, where it came
from and the original bytes. Delivery is at least once: a consumer may see the
same source record twice and deduplicates on (topic, partition, offset).

**A copy** (``continuity.dlq.kind`` absent or ``copy``): the original key and
value bytes untouched, the reason and source in headers in the style of Kafka
Connect's error headers, so a repaired event can be re-published byte for byte.

**A reference** (``continuity.dlq.kind: reference``): a source record too large
to copy within the producer's and the broker's record limit
(``CONTINUITY_DEAD_LETTER_MAX_BYTES``) is dead-lettered by position instead:
the value is a :class:`DeadLetterReference` (JSON), the key is the original
key when it is short, and the headers are a copy's plus
``continuity.dlq.size``. The source record itself stays in its topic, readable
by its position for as long as that topic's retention keeps it
(``continuity dlq show`` reads it there).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# Kafka headers of every dead letter (names and meanings are part of the contract).
REASON_HEADER = "continuity.dlq.reason"
DETAIL_HEADER = "continuity.dlq.detail"
TOPIC_HEADER = "continuity.dlq.topic"
PARTITION_HEADER = "continuity.dlq.partition"
OFFSET_HEADER = "continuity.dlq.offset"
# Only on a reference: what kind of dead letter it is, and the source value's size.
KIND_HEADER = "continuity.dlq.kind"
SIZE_HEADER = "continuity.dlq.size"
REFERENCE_KIND = "reference"

# The longest source key a reference still carries (as the record key): a longer
# one is left out (``key_bytes`` says how long it was), so no key can make a
# reference too large in turn.
MAX_REFERENCE_KEY_BYTES = 1024


class DeadLetterReference(BaseModel):
    """The value of a dead letter that names its source record instead of copying it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["reference"] = "reference"
    topic: str = Field(description="The source record's topic.")
    partition: int = Field(ge=0, description="Its partition.")
    offset: int = Field(ge=0, description="Its offset: read it there while retention keeps it.")
    size: int = Field(ge=0, description="Bytes of the source record's value.")
    key_bytes: int = Field(ge=0, description="Bytes of the source record's key (0: none).")
    reason: str = Field(description="Why it was dead-lettered (``continuity.dlq.reason``).")
    detail: str = Field(description="A short, human-readable detail.")
    why_reference: str = Field(
        description="Why the dead letter is a reference rather than a copy of the record."
    )
    timestamp_ms: int | None = Field(
        default=None, description="The source record's Kafka timestamp (ms), if it had one."
    )


REFERENCE_ADAPTER: TypeAdapter[DeadLetterReference] = TypeAdapter(DeadLetterReference)
