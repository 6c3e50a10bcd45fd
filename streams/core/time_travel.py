"""A session as it was at a past moment, refolded from the retained log. Pure.

What "as of T" means (README: Reading a session's past):

* A record is part of the state at ``T`` when its Kafka record timestamp is at
  or before ``T`` (milliseconds). On Apache Kafka the source topics use
  ``message.timestamp.type=LogAppendTime`` (``deploy/topics.sh``): the
  timestamp is when the broker appended the record, the earliest moment a
  worker could have folded it. ``occurred_at`` is not used: a late-arriving
  event (a phone that was offline, a POS batch upload) had not changed the
  session yet at a moment between its ``occurred_at`` and its arrival, and
  that is the state a dispute is about.
* Each partition is read in offset order and cut at its first record stamped
  after ``T``: the workers fold a partition in offset order, so nothing behind
  that record had been folded either. With LogAppendTime, timestamps never go
  down within a partition and the cut keeps exactly the records stamped
  ``<= T``. Where they may go down (``CreateTime``, the producer's clock) each
  record counts at the highest timestamp up to it in its partition (its
  *effective* timestamp); a record with no timestamp takes its predecessor's.
* Partitions of different topics have no order in Kafka. They are merged by
  effective timestamp, ties by topic, partition and offset: the order the
  live workers most likely saw, not a guaranteed one. The fields the README
  lists under Rebuild as depending on cross-topic arrival order may differ
  from what the live state held for the same reason.

The fold is the workers' own: ``plan_batch`` with the configured ``Limits``
against an in-memory state that applies each plan as ``commit.lua`` does
(sessions, deletes of merged guests, aliases, device sign-ins, applied offsets). Erasures are
given up front and cover records whatever the moment, so an erased customer's
past is never reconstructed, not even for a moment before the erasure.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from schemas.events import AnyEvent
from schemas.session import Session
from streams.core.decode import decode
from streams.core.erasure import Erasure
from streams.core.fold import DEFAULT_LIMITS, Limits, Rejected
from streams.core.plan import Kind, Plan, Record, Snapshot, plan_batch
from streams.core.shared_device import linked

# '+' in an unencoded query string arrives as a space: "10:00:00 01:00".
_OFFSET_AS_SPACE = re.compile(r"^(.*[0-9]) ([0-9]{2}:?[0-9]{2})$")
_DIGITS = re.compile(r"^[0-9]{1,15}$")
_MAX_TEXT = 64


class BadMoment(ValueError):
    """A moment that cannot be read; the message says what is expected."""


def parse_moment(text: str) -> int:
    """An ISO 8601 time (UTC when it has no offset) or Unix milliseconds, as Unix ms.

    Finer than a millisecond is cut off: record timestamps are milliseconds.
    """
    raw = text.strip()
    if not raw or len(raw) > _MAX_TEXT:
        raise BadMoment("an ISO 8601 time such as 2026-11-24T10:15:00Z, or Unix milliseconds")
    if _DIGITS.match(raw):
        return int(raw)
    fixed = _OFFSET_AS_SPACE.sub(r"\1+\2", raw)
    try:
        at = datetime.fromisoformat(fixed)
    except ValueError:
        raise BadMoment(
            "an ISO 8601 time such as 2026-11-24T10:15:00Z (encode '+' as %2B), "
            "or Unix milliseconds"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    ms = int(at.timestamp() * 1000)
    if ms < 0:
        raise BadMoment("a time after 1970-01-01T00:00:00Z")
    return ms


class FutureMoment(BadMoment):
    """A moment later than now: nothing is known of it yet."""

    def __init__(self, moment_ms: int, now_ms: int) -> None:
        super().__init__(f"{iso_ms(moment_ms)} is in the future (now is {iso_ms(now_ms)})")
        self.moment_ms, self.now_ms = moment_ms, now_ms


def past_moment(text: str, now_ms: int) -> int:
    """``parse_moment``, refusing a moment after ``now_ms`` (``FutureMoment``)."""
    moment = parse_moment(text)
    if moment > now_ms:
        raise FutureMoment(moment, now_ms)
    return moment


def iso_ms(ms: int) -> str:
    """Unix ms as ISO 8601 UTC with milliseconds (``2026-11-24T10:15:00.000Z``)."""
    at = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass
class PartitionCut:
    """Reading one partition up to a moment, in offset order (fed chunk by chunk)."""

    moment_ms: int
    # The effective timestamp of the last record taken (-1: none yet).
    last_ms: int = -1
    # The offset the next record would have: where this partition was read up to.
    next_offset: int = 0
    # A record stamped after the moment was met: nothing further belongs to it.
    done: bool = False

    def take(self, records: Iterable[Record]) -> list[Record]:
        """The records at or before the moment, stamped with their effective timestamp.

        Stops (``done``) at the first record stamped after the moment; records
        after it, in this chunk or later ones, are never taken.
        """
        taken: list[Record] = []
        for record in records:
            if self.done:
                break
            ts = record.timestamp_ms
            effective = self.last_ms if ts is None or ts < 0 else max(self.last_ms, ts)
            if effective > self.moment_ms:
                self.done = True
                self.next_offset = record.offset
                break
            self.last_ms = effective
            self.next_offset = record.offset + 1
            taken.append(record if ts == effective else replace(record, timestamp_ms=effective))
        return taken


def cut(records: Iterable[Record], moment_ms: int) -> dict[str, list[Record]]:
    """Every partition's records at or before the moment (``PartitionCut``), by ``tp``.

    ``records`` may come in any order; each partition is taken in offset order.
    """
    by_tp: dict[str, list[Record]] = {}
    for record in records:
        by_tp.setdefault(record.tp, []).append(record)
    return {
        tp: PartitionCut(moment_ms).take(sorted(recs, key=lambda r: r.offset))
        for tp, recs in sorted(by_tp.items())
    }


def merged(partitions: Mapping[str, Sequence[Record]]) -> Iterator[Record]:
    """The partitions' records in one order: effective timestamp, then topic, partition,
    offset. Each partition keeps its offset order (its timestamps never go down once cut)."""
    return heapq.merge(
        *partitions.values(),
        key=lambda r: (_stamp(r), r.topic, r.partition, r.offset),
    )


def _stamp(record: Record) -> int:
    return record.timestamp_ms if record.timestamp_ms is not None else -1


def relevant(record: Record, ids: frozenset[str]) -> bool:
    """Might ``record`` change the session of any of ``ids``? A cheap pre-filter.

    True when its key is one of the ids (producers key by customer, else guest)
    or its value names one of them as a JSON string: a sign-in of another
    customer naming one of the guests moves that guest's session away. A false
    positive only costs a fold; an id written with JSON escapes is missed, which
    is why a caller can fold every record instead.
    """
    if record.key is not None and record.key.decode("utf-8", "replace") in ids:
        return True
    value = record.value
    if not value:
        return False
    return any(b'"' + i.encode() + b'"' in value for i in ids)


@dataclass
class Replay:
    """An in-memory state folded by the workers' planner; plans applied as ``commit.lua``
    applies them. Feed it records in the merged order, chunk by chunk."""

    erasures: Mapping[str, Erasure] = field(default_factory=dict)
    limits: Limits = DEFAULT_LIMITS
    sessions: dict[str, Session] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    # anonymous_id -> customer -> newest sign-in (ms): the shared-device guard's input.
    devices: dict[str, dict[str, int]] = field(default_factory=dict)
    # key -> version floor (``P:vf``): a guest whose alias ended with its customer's
    # session goes on from there. The snapshot holds every alias, so the planner ends
    # all of an ended session's aliases itself (commit.lua finds them by link set).
    floors: dict[str, int] = field(default_factory=dict)
    folded: int = 0
    erased: int = 0

    def fold(
        self, records: Sequence[Record], decoded: Sequence[AnyEvent | Rejected] | None = None
    ) -> Plan:
        """Plan ``records`` (decoded here unless given) against the state and apply the plan."""
        events = list(decoded) if decoded is not None else [decode(r.value) for r in records]
        floors = {k: v for k, v in self.floors.items() if k not in self.sessions}
        snapshot = Snapshot(
            self.aliases,
            self.offsets,
            self.sessions,
            self.erasures,
            devices=self.devices,
            floors=floors,
        )
        plan = plan_batch(records, events, snapshot, self.limits)
        # As commit.lua: deletes (merged guests) before writes.
        for key in plan.deletes:
            self.sessions.pop(key, None)
            self.floors.pop(key, None)
        self.sessions.update(plan.writes)
        for anon, customer, at_ms in plan.device_links:
            self.devices[anon] = linked(self.devices.get(anon, {}), customer, at_ms)
        self.aliases.update(plan.aliases)
        for anon in plan.alias_deletes:
            self.aliases.pop(anon, None)
        self.offsets.update(plan.offsets)
        for key, version in plan.floors.items():
            self.floors[key] = max(self.floors.get(key, 0), version)
        self.floors.update({k: s.version for k, s in plan.writes.items()})
        self.folded += len(records)
        self.erased += sum(1 for o in plan.outcomes if o.kind is Kind.ERASED)
        return plan

    def key_of(self, some_id: str) -> str:
        """The session key ``some_id`` resolved to at this point of the log."""
        return self.aliases.get(some_id, some_id)

    def session_of(self, some_id: str) -> Session | None:
        """The session ``some_id`` resolved to at this point of the log, if any."""
        return self.sessions.get(self.key_of(some_id))


@dataclass(frozen=True)
class AsOf:
    """The session of an id at a moment, and what it was folded from."""

    requested: str
    key: str
    moment_ms: int
    session: Session | None
    folded: int
    # An erasure names the id or its key: what it covered was skipped, never folded.
    erased: bool

    def describe(self, upto: Mapping[str, int], read: int, record_time: str) -> dict[str, object]:
        """The ``as_of`` object of an answer: the moment, what was folded, where reading stopped.

        ``upto``: ``topic:partition`` -> the first offset not part of the moment;
        ``read``: records read (``folded`` of them passed the pre-filter);
        ``record_time``: the timestamp type the records carried.
        """
        return {
            "moment": iso_ms(self.moment_ms),
            "moment_ms": self.moment_ms,
            "key": self.key,
            "records_read": read,
            "records_folded": self.folded,
            "upto": dict(sorted(upto.items())),
            "record_time": record_time,
            "order": "record timestamp, then topic, partition, offset (most likely, not certain)",
        }


def erasures_by_id(erasures: Iterable[Erasure]) -> dict[str, Erasure]:
    """id -> the erasure that covers it: the latest, and of two equally late (the one
    first recorded on Kafka, then as Redis recorded it) the one reaching further."""
    best: dict[str, Erasure] = {}
    for erasure in erasures:
        for some_id in erasure.ids:
            held = best.get(some_id)
            if held is None or _reach(erasure) > _reach(held):
                best[some_id] = erasure
    return best


def _reach(erasure: Erasure) -> tuple[int, int]:
    return erasure.erased_at_ms, sum(erasure.upto.values())


def session_as_of(
    records: Iterable[Record],
    moment_ms: int,
    some_id: str,
    erasures: Iterable[Erasure] = (),
    limits: Limits = DEFAULT_LIMITS,
    batch: int = 500,
) -> AsOf:
    """The session of ``some_id`` as it was at ``moment_ms`` (see the module docstring).

    ``records``: records of the source topics, each partition from its start
    (any interleaving); those after the moment are cut here.
    """
    by_id = erasures_by_id(erasures)
    replay = Replay(by_id, limits)
    chunk: list[Record] = []
    for record in merged(cut(records, moment_ms)):
        chunk.append(record)
        if len(chunk) >= batch:
            replay.fold(chunk)
            chunk = []
    if chunk:
        replay.fold(chunk)
    return answer(replay, some_id, moment_ms)


def answer(replay: Replay, some_id: str, moment_ms: int) -> AsOf:
    """What ``replay`` holds for ``some_id``, as of ``moment_ms``."""
    key = replay.key_of(some_id)
    erased = some_id in replay.erasures or key in replay.erasures
    return AsOf(some_id, key, moment_ms, replay.sessions.get(key), replay.folded, erased)
