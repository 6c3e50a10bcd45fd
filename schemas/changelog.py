"""The ``session-changelog`` topic (part of the wire contract).

A compacted topic, keyed by session key and co-partitioned with the source
topics, that carries every committed state of every key: a customer's or a
guest's session, a merged guest's alias (``merged_into``), and the sign-ins
recorded on a device. It is the feed for downstream systems (a warehouse, a
CDP, a search index) and what ``continuity rebuild`` restores Redis from.

Delivery is at least once and ordered per key: a consumer keeps, per key, the
record with the highest ``seq`` and drops one whose ``(key, seq)`` it has
seen. ``version`` is the session version a frontend sees; it only grows
while the key holds a session (a merged guest's next session goes on from
its customer's version, so ``seq``, not ``version``, orders a key's records).

A key's state ends with a tombstone (a record with no value): its session
ended (idle past its TTL, and Redis forgot it) or was erased. A tombstone's
headers say why (``continuity.reason``), the last version the key had
(``continuity.version``: its next session goes on from there) and the
source positions (``continuity.positions``, JSON as in :class:`Positions`).

A record with the header ``continuity.control: watermark`` is not a key's
state: it says which source positions every record of its partition before it
reflects (:class:`Watermark`); downstream consumers skip it. Each partition N
has its own watermarks, on partition N, covering the source topics' partition N
(and ``session-forwards`` partition N, the workers' internal topic).

A state is published only once the forwards its commit sent to other
partitions are on ``session-forwards``, and it carries the session's wait for
a merge across partitions (``waiting``), so a restore from this topic loses no
work in flight between partitions.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.session import Session

# Kafka headers (names and meanings are part of the contract).
CONTROL_HEADER = "continuity.control"
REASON_HEADER = "continuity.reason"
VERSION_HEADER = "continuity.version"
POSITIONS_HEADER = "continuity.positions"
SEQ_HEADER = "continuity.seq"
# The key of the watermark records: not an id (ids start with a letter or digit).
# Each is published on the partition it speaks for, whatever the key hashes to.
WATERMARK_KEY = "~watermark"

# Source topic -> the applied offset of each of its partitions, by partition
# number (-1: nothing applied). Compact on purpose: every record carries it.
Positions = dict[str, list[int]]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SessionState(_Record):
    """One key's state as a commit left it: the value of a changelog record."""

    key: str = Field(description="The session key: a customer id, or a guest's anonymous id.")
    seq: str = Field(
        description="The commit's sequence (`<ms>-<n>`, growing): orders a key's records."
    )
    version: int = Field(description="The session's version, or the version its successor follows.")
    session: Session | None = Field(
        default=None,
        description="The session as served (`recent_event_ids` holds its duplicate window); "
        "null for a key that only carries an alias or device sign-ins.",
    )
    merged_into: str | None = Field(
        default=None, description="A merged guest: the customer key its events fold into."
    )
    devices: dict[str, int] = Field(
        default_factory=dict,
        description="Sign-ins on this anonymous id (device): customer id -> Unix ms of the "
        "newest; `erased:<ms>` stands for an erased customer (the shared-device guard).",
    )
    links: list[str] = Field(
        default_factory=list,
        description="A customer's linked guest ids: every guest ever signed in to it (an "
        "erasure of the customer reaches them all).",
    )
    expires_at_ms: list[int] = Field(
        description="When Redis forgets the session, the alias and the sign-ins (Unix ms; "
        "-1 never, -2 none).",
        min_length=3,
        max_length=3,
    )
    positions: Positions = Field(
        description="The source positions this state reflects: every source record up to "
        "these offsets is folded in (by topic, an offset per partition)."
    )
    waiting: dict[str, Any] | None = Field(
        default=None,
        description="Internal, for a restore: the session waits for the merge of a login "
        "whose guest lives on another partition, holding the records that came meanwhile "
        "(docs/merge-across-partitions.md); null if it does not wait. Its form may change.",
    )


class Watermark(_Record):
    """A control record of one partition: every record of that partition's commits
    published before it reflects these positions (the source topics' same partition)."""

    seq: str = Field(description="The partition's last commit whose records all precede this one.")
    positions: Positions
    fingerprints: dict[str, str] = Field(
        default_factory=dict,
        description="`topic:partition` -> fingerprint of the record at the applied offset: "
        "tells a restore whether a source log still is the one these positions count in.",
    )
    forwarded: dict[str, str] = Field(
        default_factory=dict,
        description="Origin partition -> the id of the last `session-forwards` record from "
        "it applied by this partition (a restore skips the relays' re-sends of those).",
    )


SESSION_STATE_ADAPTER: TypeAdapter[SessionState] = TypeAdapter(SessionState)
WATERMARK_ADAPTER: TypeAdapter[Watermark] = TypeAdapter(Watermark)
