"""What one batch tells the metrics: bounded labels per record and facts per commit. Pure.

Label values are bounded by construction: a channel is one of the contract's
seven or ``unknown``, a type one of the contract's types or ``unknown``.
Nothing read from the input reaches a label unless it is one of those values,
so a producer sending junk cannot grow the number of series. Customer ids
never become labels.

Each source record is counted once by what became of it, where that was
decided (:func:`settles`): a record handed to another partition or held by a
waiting session (``forwarded``, ``held``) is counted as a step on its way
(``deferred``), and by its event's channel and type where it is applied,
skipped or rejected in the end, whichever partition that is; there its
freshness is measured from its own Kafka timestamp, which the forwards carry.
A ``session-forwards`` record is no source event: it counts among the
forwards consumed (``forwards``), never among the events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.events import EVENT_MODELS, EVENT_TYPES, AnyEvent, Channel, Id
from schemas.topics import SESSION_FORWARDS
from streams.core.fold import Reason, Rejected
from streams.core.kpi import multichannel_sessions
from streams.core.kpi_delta import KpiDelta
from streams.core.plan import Kind, Plan, Record, RecordOutcome, Snapshot

UNKNOWN = "unknown"
CHANNELS: frozenset[str] = frozenset(c.value for c in Channel)
TYPES: frozenset[str] = frozenset(EVENT_TYPES)
_TYPE_OF: dict[type, str] = dict(zip(EVENT_MODELS, EVENT_TYPES, strict=True))
_ID: TypeAdapter[str] = TypeAdapter(Id)
# Only these rejections may hold a readable JSON object worth peeking into.
_PEEKABLE = frozenset({Reason.INVALID_EVENT, Reason.UNKNOWN_TYPE})
# A record's way goes on elsewhere (another partition) or later (after a merge lands).
DEFERRED = frozenset({Kind.FORWARDED, Kind.HELD})

RecordId = tuple[str, int, int]


@dataclass(frozen=True)
class RecordLabels:
    """Bounded metric labels of one record, and its event id for log lines."""

    channel: str = UNKNOWN
    type: str = UNKNOWN
    event_id: str | None = None


def record_id(record: Record) -> RecordId:
    """Where a record sits in Kafka: (topic, partition, offset)."""
    return (record.topic, record.partition, record.offset)


def record_labels(raw: bytes | None, decoded: AnyEvent | Rejected) -> RecordLabels:
    """The labels of one record, from its event, or for a rejected one from what is readable.

    An event that failed validation often still names a valid channel and type
    (a negative quantity on ``cart.item_added`` from ``pos``): those are kept,
    anything outside the contract becomes ``unknown``.
    """
    if not isinstance(decoded, Rejected):
        return RecordLabels(
            decoded.channel.value, _TYPE_OF.get(type(decoded), UNKNOWN), decoded.event_id
        )
    if decoded.reason not in _PEEKABLE or raw is None:
        return RecordLabels()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return RecordLabels()
    if not isinstance(body, dict):
        return RecordLabels()
    return RecordLabels(
        _bounded(body.get("channel"), CHANNELS),
        _bounded(body.get("type"), TYPES),
        _event_id(body.get("event_id")),
    )


def labels_by_record(
    records: Sequence[Record], decoded: Sequence[AnyEvent | Rejected]
) -> dict[RecordId, RecordLabels]:
    """:func:`record_labels` of a batch, keyed by :func:`record_id`."""
    return {record_id(r): record_labels(r.value, d) for r, d in zip(records, decoded, strict=True)}


def outcome_labels(o: RecordOutcome, labels: Mapping[RecordId, RecordLabels]) -> RecordLabels:
    """The labels of ``o``'s record: the batch's, or for a source record a forward or a
    held entry brought here, its event's (or what its rejection left readable)."""
    found = labels.get(record_id(o.record))
    if found is not None:
        return found
    if o.event is not None:
        return record_labels(o.record.value, o.event)
    if o.reason is not None:
        return record_labels(o.record.value, Rejected(o.reason, o.detail))
    return RecordLabels()


def settles(o: RecordOutcome) -> bool:
    """Whether ``o`` is the one outcome its source record is counted by: not a step on
    its way (forwarded, held), not a forward's follow-up of an event decided on
    another partition, not a ``session-forwards`` record's own."""
    return o.record.topic != SESSION_FORWARDS and not o.follow_up and o.kind not in DEFERRED


@dataclass(frozen=True)
class BatchFacts:
    """Everything the metrics count about one committed batch."""

    size: int = 0
    """Records in the batch."""
    processed: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(channel, type, outcome) -> records."""
    by_topic: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(topic, outcome) -> records."""
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(topic, reason) -> records sent to the dead-letter topic."""
    dropped_lines: int = 0
    """Guest cart lines a login merge could not keep."""
    event_ages: list[tuple[str, float]] = field(default_factory=list)
    """(channel, seconds from ``occurred_at`` to the commit) per applied event."""
    append_ages: list[tuple[str, float]] = field(default_factory=list)
    """(topic, seconds from the Kafka record timestamp to the commit) per applied event."""
    multichannel_sessions: int = 0
    kpis: KpiDelta = field(default_factory=KpiDelta)
    """Carts started, resumes, checkouts, conversions, first touch to checkout."""
    kept_apart: Counter[str] = field(default_factory=Counter)
    """What the shared-device guard kept apart: ``sign_in``, ``guest_event``."""
    deferred: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(source topic, ``forwarded`` or ``held``) -> steps of source records on their way."""
    forwards: Counter[str] = field(default_factory=Counter)
    """outcome -> ``session-forwards`` records: ``applied`` (their work done here),
    ``duplicate`` (a relay's re-send), ``already_applied``, ``rejected``."""
    misplaced: int = 0
    """Records that came on another partition than their key's (sent on to it)."""
    clamped: int = 0
    """Source records whose ``occurred_at`` was brought within their timestamp's bounds."""


def batch_facts(
    plan: Plan,
    snapshot: Snapshot,
    labels: Mapping[RecordId, RecordLabels],
    committed_at: float,
    size: int | None = None,
) -> BatchFacts:
    """The facts of ``plan``, committed at ``committed_at`` (Unix seconds) over ``snapshot``;
    ``size``: the records of the batch (default: the plan's outcomes).

    Ages are never negative: an event stamped in the future (a device clock
    ahead of ours) counts as fresh rather than corrupting the histogram.
    """
    facts = BatchFacts(
        size=len(plan.outcomes) if size is None else size,
        dropped_lines=len(plan.dropped_lines),
        multichannel_sessions=multichannel_sessions(plan, snapshot),
        kpis=plan.kpis,
        kept_apart=plan.kept_apart,
        misplaced=plan.misplaced,
        clamped=plan.clamped,
    )
    if plan.forwards_taken:
        facts.forwards[Kind.APPLIED.value] += plan.forwards_taken
    for o in plan.outcomes:
        if o.record.topic == SESSION_FORWARDS:
            facts.forwards[o.kind.value] += 1
            if o.kind is Kind.REJECTED and o.reason is not None:
                facts.dead_letters[(o.record.topic, o.reason.value)] += 1
            continue
        if o.follow_up:
            continue
        if o.kind in DEFERRED:
            facts.deferred[(o.record.topic, o.kind.value)] += 1
            continue
        lab = outcome_labels(o, labels)
        facts.processed[(lab.channel, lab.type, o.kind.value)] += 1
        facts.by_topic[(o.record.topic, o.kind.value)] += 1
        if o.kind is Kind.REJECTED and o.reason is not None:
            facts.dead_letters[(o.record.topic, o.reason.value)] += 1
        if o.kind is not Kind.APPLIED or o.event is None:
            continue
        age = committed_at - o.event.occurred_at.timestamp()
        facts.event_ages.append((o.event.channel.value, max(0.0, age)))
        if o.record.timestamp_ms is not None:
            age = committed_at - o.record.timestamp_ms / 1000
            facts.append_ages.append((o.record.topic, max(0.0, age)))
    return facts


def _bounded(value: object, allowed: frozenset[str]) -> str:
    return value if isinstance(value, str) and value in allowed else UNKNOWN


def _event_id(value: object) -> str | None:
    # Only an id the contract would accept: it lands in log lines, so no
    # newlines, no megabyte strings.
    try:
        return _ID.validate_python(value)
    except ValidationError:
        return None
