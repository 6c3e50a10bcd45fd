"""The records, outcomes, snapshot and plan of one batch, and what planning it works on. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from schemas.events import AnyEvent
from schemas.forward import Forward, JourneyItem, Origin
from schemas.session import CartLine, Session
from streams.core.crossing import Held, Outgoing, Pending, Placement
from streams.core.erasure import Erasure
from streams.core.fold import (
    Limits,
    Reason,
)
from streams.core.journey import Entry
from streams.core.kpi_delta import KpiDelta
from streams.core.shared_device import Links


@dataclass(frozen=True)
class Record:
    """One Kafka record as the worker received it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    # The dead letter this record repairs (``continuity dlq replay``), from its header.
    replayed_from: str | None = None
    # A ``session-forwards`` record's origin partition and outbox entry id, from its
    # headers: re-sends after a relay crash carry ids already applied.
    forwarded: tuple[int, str] | None = None
    # The key prefix that sent a ``session-forwards`` record (its header), and whether
    # it is another deployment's (set by the worker, which knows its own prefix).
    sender: str | None = None
    foreign: bool = False

    @cached_property  # read many times per record (grouping, planning, facts)
    def tp(self) -> str:
        """The field naming this record's partition in the offsets hash."""
        return f"{self.topic}:{self.partition}"


class Kind(StrEnum):
    """What became of one record. Metric label values; part of the interface."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    ALREADY_APPLIED = "already_applied"
    REJECTED = "rejected"
    # Published before its customer was erased (streams/core/erasure.py): skipped for good.
    ERASED = "erased"
    # Handed to another partition (streams/core/crossing.py): applied there.
    FORWARDED = "forwarded"
    # Held by a session waiting for its login's merge; applied when that lands.
    HELD = "held"


class Via(StrEnum):
    """How an event reached the step that plans it (a held one keeps it)."""

    # From a source record: routed by its ids and aliases here.
    SOURCE = "source"
    # Routed here already (held while its session waited): its key stays.
    ROUTED = "routed"
    # Forwarded by a guest's alias from another partition: the alias may have ended.
    FORWARD = "forward"
    # A guest's new session whose version floor came from another partition.
    FLOORED = "floored"


@dataclass(frozen=True)
class RecordOutcome:
    """What became of ``record`` (a source record, also when a forward or a held entry
    brought it here, or a ``session-forwards`` record's own skip or rejection)."""

    record: Record
    kind: Kind
    event: AnyEvent | None = None
    session_key: str | None = None
    reason: Reason | None = None
    detail: str = ""
    # A forward's part of an event whose own outcome was decided on another partition
    # (an undo's lines given back, aliases ended with their customer's session, the
    # guest half of an erased sign-in): not a second outcome of the event.
    follow_up: bool = False


@dataclass(frozen=True)
class Needs:
    """What the planner must read before it can plan a batch."""

    anonymous_ids: frozenset[str]
    keys: frozenset[str]
    partitions: frozenset[str]
    # Guests a login from another partition takes (their journeys leave with them),
    # and customers whose link sets matter: a forward brings a guest's event or merge
    # to them, or their session may end with guests of other partitions linked.
    journeys: frozenset[str] = frozenset()
    links: frozenset[str] = frozenset()
    # Only the keys of the records' partition: an alias's target or a device's customer
    # elsewhere is not read either (it is the planner with a ``Placement`` that needs them).
    local: bool = False


@dataclass(frozen=True)
class Snapshot:
    """What the planner saw in Redis. Absent entries are simply missing."""

    aliases: Mapping[str, str]
    offsets: Mapping[str, int]
    # Of the keys the batch needs, of the aliases' targets, and of the customers its
    # guest ids signed in to (``devices``): where a guest's events went.
    sessions: Mapping[str, Session]
    # Erasures naming any id the batch needs, and the count of erasures ever made:
    # a commit is refused if an erasure happened after this snapshot was read.
    erasures: Mapping[str, Erasure] = field(default_factory=dict)
    erasure_epoch: int = 0
    # anonymous_id -> customer -> newest sign-in (ms), for ids ever signed in with
    devices: Mapping[str, Links] = field(default_factory=dict)
    # key -> the last version of a session Redis has forgotten after it ended
    # (its key TTL ran out): the key's next event continues from there.
    floors: Mapping[str, int] = field(default_factory=dict)
    # key -> tp -> the last source offset its state already holds, past the applied
    # offsets: a restore from the changelog (streams/core/changelog.py) folds a
    # record only into a key whose restored state does not reflect it yet.
    reflected: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # Sessions waiting for a login's merge from another partition, and what they hold.
    pending: Mapping[str, Pending] = field(default_factory=dict)
    # customer -> the guest ids linked to its session (a forwarded guest event's alias
    # is live while its guest is among them).
    links: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # guest id -> its committed journey, for a guest a login takes to another partition.
    journeys: Mapping[str, Sequence[JourneyItem]] = field(default_factory=dict)
    # origin partition -> the last of its forwards applied here (outbox entry id).
    forwarded: Mapping[int, str] = field(default_factory=dict)


@dataclass
class Plan:
    """The effect of one batch, and the assumptions it was computed under."""

    outcomes: list[RecordOutcome] = field(default_factory=list)
    writes: dict[str, Session] = field(default_factory=dict)
    # Merged guest key -> the customer its committed session and journey went to: the
    # batch's first merge of it, as in separate commits (it may merge again after an undo).
    deletes: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    # (guest id, customer) of every sign-in that linked them: each customer's link set
    # gets the guest, as separate batches would add it, wherever its alias ends up.
    links: set[tuple[str, str]] = field(default_factory=set)
    # Guest ids whose alias goes: their sign-in to an erased customer was skipped.
    alias_deletes: set[str] = field(default_factory=set)
    offsets: dict[str, int] = field(default_factory=dict)
    # tp -> fingerprint of the record at the new applied offset (streams/core/log_reset.py)
    fingerprints: dict[str, str] = field(default_factory=dict)
    dropped_lines: list[CartLine] = field(default_factory=list)
    expected_versions: dict[str, int] = field(default_factory=dict)
    expected_aliases: dict[str, str | None] = field(default_factory=dict)
    expected_offsets: dict[str, int] = field(default_factory=dict)
    # Every session key a decision looked at, found or not: an absent guest at a
    # login, the target of a rejected event. Another worker may write any of them
    # (a guest's partition is not its customer's), so each is checked at commit.
    read_keys: set[str] = field(default_factory=set)
    expected_erasure_epoch: int = 0
    # Committed with the states, in the same atomic step: one journey entry per
    # applied event, the KPI increments, and the notifications for the outbox.
    journey: list[Entry] = field(default_factory=list)
    kpis: KpiDelta = field(default_factory=KpiDelta)
    notifications: list[bytes] = field(default_factory=list)
    # Sign-ins to record per device: (anonymous_id, customer, ms).
    device_links: list[tuple[str, str, int]] = field(default_factory=list)
    # What the shared-device guard kept apart: "sign_in" or "guest_event" -> count.
    kept_apart: Counter[str] = field(default_factory=Counter)
    # Source records whose ``occurred_at`` was brought within the bounds of their
    # Kafka timestamp (streams/core/event_time.py), counted where they came in.
    clamped: int = 0
    # Sessions that ended (streams/core/expiry.py) -> their last version, in the order
    # the batch ended them: what a changelog of sessions would publish as tombstones.
    expired: dict[str, int] = field(default_factory=dict)
    # Keys whose committed journey, links, guests' aliases and handoff codes the commit
    # clears first (commit.lua's "expired" rows): sessions ended here, and guests merged
    # earlier in the batch into a session then ended (their journeys go, not move). A
    # guest merged earlier in the batch is not cleared when it ends: the merge moves
    # what it had committed to the customer, as two separate commits would.
    cleared: dict[str, None] = field(default_factory=dict)
    # Written key -> (the last ms, event time, its session is alive, or 0 for a
    # session with no event yet; its TTL in ms): what the commit's key TTLs are
    # computed from.
    lifetimes: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Device (anonymous_id) -> the last ms (event time) its newest sign-in here still
    # counts for the shared-device guard: its key TTL is computed from this.
    device_ends: dict[str, int] = field(default_factory=dict)
    # Guest ids whose alias ended, with no session of their own -> the version floor
    # their next session goes on from; and how long (ms) such a floor is kept.
    floors: dict[str, int] = field(default_factory=dict)
    floor_ms: int = 0
    # Work for other partitions, in order (the commit appends it to this partition's
    # forwards outbox); the sessions that start or stop waiting for a merge (None:
    # stopped); the last forward applied per origin partition; merged guests whose
    # committed journey left with a forward (deleted here, not moved); and device
    # sign-ins renamed for an erased customer: (anonymous_id, customer, new name).
    forwards: list[Outgoing] = field(default_factory=list)
    # Planned for one partition (``Placement``): it changes that partition's keys only.
    local: bool = False
    # Records that came on another partition than their key's (sent there).
    misplaced: int = 0
    # ``session-forwards`` records whose work this plan did (not skipped as sent again,
    # redelivered or unreadable: those have outcomes of their own).
    forwards_taken: int = 0
    pending: dict[str, Pending | None] = field(default_factory=dict)
    forward_marks: dict[int, str] = field(default_factory=dict)
    handed: set[str] = field(default_factory=set)
    device_renames: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def rejected(self) -> list[RecordOutcome]:
        return [o for o in self.outcomes if o.kind is Kind.REJECTED]


@dataclass
class _Batch:
    """What planning one batch works on: the snapshot as the batch has changed it so far."""

    plan: Plan
    snapshot: Snapshot
    limits: Limits
    place: Placement | None
    aliases: dict[str, str]
    sessions: dict[str, Session]
    devices: dict[str, dict[str, int]]
    floors: dict[str, int]
    forgotten: set[str]
    pending: dict[str, Pending]
    pending_changed: set[str] = field(default_factory=set)

    def here(self, key: str) -> bool:
        """Whether ``key`` lives on the partition this plan commits."""
        return self.place is None or self.place.here(key)

    def send(self, forward: Forward) -> None:
        """Hand ``forward`` to the partition of its key (the commit writes it out)."""
        assert self.place is not None, "a forward is only sent when keys live apart"
        self.plan.forwards.append(Outgoing(self.place.of(forward.key), forward))

    def wait(self, key: str, awaiting: str) -> None:
        """``key``'s session waits for the merge of the login ``awaiting``."""
        self.pending[key] = Pending(awaiting)
        self.pending_changed.add(key)

    def hold(self, key: str, record: Record, addressed: str, seen: bool, via: Via) -> None:
        """Hold ``record`` until ``key``'s session stops waiting."""
        held = Held(
            _origin(record), record.value or b"", record.replayed_from, addressed, seen, via.value
        )
        self.pending[key] = self.pending[key].holding(held)
        self.pending_changed.add(key)

    def release(self, key: str) -> Pending:
        """``key``'s session stops waiting: what it held, to be applied now."""
        self.pending_changed.add(key)
        return self.pending.pop(key)

    def links_of(self, customer: str) -> set[str]:
        """The guest ids linked to ``customer``'s session as the batch has left them."""
        stored = (
            set() if customer in self.plan.cleared else set(self.snapshot.links.get(customer, ()))
        )
        return stored | {anon for anon, into in self.plan.links if into == customer}


def joined(plans: Sequence[Plan], records: Sequence[Record]) -> Plan:
    """One plan of a batch planned per partition: what each part decided, together.

    The parts touch disjoint partitions' records, so nothing is decided twice;
    outcomes come back in ``records``' arrival order. Only for reading what a
    batch did (outcomes, writes, counts): each part was committed on its own.
    """
    order = {(r.topic, r.partition, r.offset): i for i, r in enumerate(records)}
    out = Plan()
    for part in plans:
        out.outcomes.extend(part.outcomes)
        out.kept_apart.update(part.kept_apart)
        out.kpis.add(part.kpis)
        out.misplaced += part.misplaced
        out.clamped += part.clamped
        out.forwards_taken += part.forwards_taken
        for name in (
            "writes", "deletes", "aliases", "offsets", "fingerprints", "expected_versions",
            "expected_aliases", "expected_offsets", "expired", "cleared", "lifetimes",
            "device_ends", "floors", "pending", "forward_marks",
        ):  # fmt: skip
            getattr(out, name).update(getattr(part, name))
        for name in ("links", "alias_deletes", "read_keys", "handed"):
            getattr(out, name).update(getattr(part, name))
        for name in (
            "dropped_lines", "journey", "notifications", "device_links", "forwards",
            "device_renames",
        ):  # fmt: skip
            getattr(out, name).extend(getattr(part, name))
    out.outcomes.sort(
        key=lambda o: order.get((o.record.topic, o.record.partition, o.record.offset), 0)
    )
    return out


def _origin(record: Record) -> Origin:
    return Origin(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
    )


def _from_origin(origin: Origin, value: bytes | None, replayed_from: str | None) -> Record:
    """The source record ``origin`` names, as a forward or a held entry carried it."""
    return Record(
        origin.topic, origin.partition, origin.offset, None, value,
        origin.timestamp_ms, replayed_from,
    )  # fmt: skip


def _text(record: Record) -> str | None:
    return None if record.value is None else record.value.decode()
