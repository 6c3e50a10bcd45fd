"""Plan one batch of records against a snapshot of Redis. Pure.

The worker reads a ``Snapshot`` (aliases, per-partition applied offsets and
sessions), calls ``plan_batch`` and commits the resulting ``Plan`` with one
compare-and-set script (``streams/store/state.py``). The plan records what it
assumed (``expected_*``), so a commit that raced with another worker is
refused whole and the batch is simply re-planned against fresh state.

Exactly-once effect: a record whose offset is at or below the applied offset
stored for its partition is skipped (``already_applied``), and the new
applied offsets are written in the same atomic step as the states. A record
that carries an ``event_id`` seen recently by its session is a ``duplicate``;
a guest's, also if seen by a session its guest's events went to (``_applied_elsewhere``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from schemas.events import AnyEvent, SessionUnmerged
from schemas.forward import Forward, JourneyItem, Origin
from schemas.session import CartLine, Session
from schemas.topics import SESSION_FORWARDS
from streams.core.crossing import Held, Outgoing, Pending, Placement, read_forward, seq_after
from streams.core.decode import decode
from streams.core.erasure import Erasure, covering
from streams.core.expiry import end_ms, ended, successor, ttl_seconds
from streams.core.fold import (
    DEFAULT_LIMITS,
    SEEN,
    Applied,
    Duplicate,
    Limits,
    Outcome,
    Reason,
    Rejected,
    fold,
    with_cart,
)
from streams.core.fold import new_session as _new_session
from streams.core.journey import Entry, entry, moved
from streams.core.kpi_delta import KpiDelta, count
from streams.core.log_reset import fingerprint
from streams.core.merge import merge_guest
from streams.core.notifications import resumed
from streams.core.shared_device import Links, is_shared, linked
from streams.core.shared_device import erased as erased_name
from streams.core.unmerge import split


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

    @property
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
    record: Record
    kind: Kind
    event: AnyEvent | None = None
    session_key: str | None = None
    reason: Reason | None = None
    detail: str = ""


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
    pending: dict[str, Pending | None] = field(default_factory=dict)
    forward_marks: dict[int, str] = field(default_factory=dict)
    handed: set[str] = field(default_factory=set)
    device_renames: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def rejected(self) -> list[RecordOutcome]:
        return [o for o in self.outcomes if o.kind is Kind.REJECTED]


def needs(
    records: Sequence[Record],
    decoded: Sequence[AnyEvent | Rejected],
    place: Placement | None = None,
    held: Iterable[Pending] = (),
) -> Needs:
    """The aliases, session keys and partitions a batch depends on: with ``place``, only
    that partition's (another's are that partition's to read); ``held``: the records
    the batch's waiting sessions hold, which a merge landing here releases."""
    anon: set[str] = set()
    keys: set[str] = set()
    journeys: set[str] = set()
    links: set[str] = set()
    events: list[AnyEvent | Rejected] = []
    for record, event in zip(records, decoded, strict=True):
        if record.topic != SESSION_FORWARDS:
            events.append(event)
            continue
        fwd = read_forward(record.value)
        if fwd is None:
            continue
        keys.add(fwd.key)
        keys.update(i for i in (fwd.customer_id, fwd.guest_id) if i is not None)
        if fwd.kind == "login":
            journeys.add(fwd.key)
        elif fwd.kind in ("event", "merge"):
            links.add(fwd.key)
        if fwd.event is not None:
            events.append(decode(fwd.event.encode()))
    for waiting in held:
        events.extend(decode(h.value) for h in waiting.held)
    for event in events:
        if isinstance(event, Rejected):
            continue
        for guest in _guest_ids(event):
            anon.add(guest)
            keys.add(guest)
        if event.customer_id is not None:
            keys.add(event.customer_id)
            # An ended session's guests elsewhere hear of it (``_expire_here``).
            if place is not None:
                links.add(event.customer_id)
    here = (lambda _: True) if place is None else place.here
    return Needs(
        frozenset(filter(here, anon)),
        frozenset(filter(here, keys)),
        frozenset(r.tp for r in records),
        frozenset(filter(here, journeys)),
        frozenset(filter(here, links)),
        local=place is not None,
    )


def plan_batch(
    records: Sequence[Record],
    decoded: Sequence[AnyEvent | Rejected],
    snapshot: Snapshot,
    limits: Limits = DEFAULT_LIMITS,
    place: Placement | None = None,
) -> Plan:
    """Apply a batch in arrival order to the snapshot and return its plan.

    ``place``: the partition the plan commits; whatever would change another
    partition's keys goes out as a forward (``streams/core/crossing.py``). None
    plans as if every key lived here (one Redis primary, one partition)."""
    plan = Plan(local=place is not None)
    b = _Batch(
        plan,
        snapshot,
        limits,
        place,
        aliases=dict(snapshot.aliases),
        sessions=dict(snapshot.sessions),
        devices={anon: dict(links) for anon, links in snapshot.devices.items()},
        # Version floors: of sessions Redis forgot, and of guests whose alias ended.
        floors=dict(snapshot.floors),
        forgotten=set(snapshot.floors),
        pending=dict(snapshot.pending),
    )
    applied_upto = dict(snapshot.offsets)
    for record, event in zip(records, decoded, strict=True):
        if record.offset <= applied_upto.get(record.tp, -1):
            plan.outcomes.append(RecordOutcome(record, Kind.ALREADY_APPLIED))
            continue
        applied_upto[record.tp] = record.offset
        plan.offsets[record.tp] = record.offset
        plan.fingerprints[record.tp] = fingerprint(record.key, record.value)
        if record.topic == SESSION_FORWARDS:
            _forwarded(b, record)
        elif isinstance(event, Rejected):
            plan.outcomes.append(_rejected(record, event))
        else:
            _source(b, record, event)
    plan.pending = {k: b.pending.get(k) for k in b.pending_changed}
    _record_expectations(plan, records, decoded, snapshot, b.here)
    for key, written in plan.writes.items():
        ttl = ttl_seconds(written, limits.guest_ttl, limits.session_ttl) * 1000
        plan.lifetimes[key] = (end_ms(written, limits.guest_ttl, limits.session_ttl) or 0, ttl)
    plan.floor_ms = limits.session_ttl * 1000
    for anon, _, at_ms in plan.device_links:
        until = at_ms + limits.shared_device_window * 1000
        plan.device_ends[anon] = max(plan.device_ends.get(anon, until), until)
    return plan


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


def _source(
    b: _Batch,
    record: Record,
    event: AnyEvent,
    addressed: str | None = None,
    seen: bool = False,
    via: Via = Via.SOURCE,
) -> None:
    """Plan one event for ``addressed`` if given (its key decided already), else for its
    route. ``via``: how it came; ``seen``: a session of the guest's partition applied it."""
    plan, snapshot, limits, aliases, sessions = b.plan, b.snapshot, b.limits, b.aliases, b.sessions
    held = snapshot.reflected.get(addressed or route(event, aliases))
    if held is not None and held.get(record.tp, -1) >= record.offset:
        plan.outcomes.append(RecordOutcome(record, Kind.ALREADY_APPLIED))
        return
    if addressed is None:
        # A login's merge never changes its own key (its customer_id), so the key is
        # routed once. Erasure is judged on it: a login of another customer on a
        # device an erased customer once used is theirs, not the erased one's.
        _end_stale_alias(plan, event, aliases, sessions, b.floors, b.forgotten, limits)
        key = _guarded_route(plan, event, aliases, b.devices, limits)
        if not b.here(key):
            own = event.customer_id or event.anonymous_id
            assert own is not None  # the envelope guarantees one of the two
            if b.here(own):
                _forward_guest_event(b, record, event, key)
            else:
                _misplaced(b, record, event, own)
            return
    else:
        key = addressed
    if key in b.pending:
        # Held as routed now: its key and what was judged on the way stay decided.
        b.hold(key, record, key, seen, Via.FORWARD if via is Via.FORWARD else Via.ROUTED)
        plan.outcomes.append(RecordOutcome(record, Kind.HELD, event, key))
        return
    if via is Via.FORWARD and _alias_ended_here(b, event, key):
        _bounce(b, record, event, key)
        return
    erased = covering(snapshot.erasures, (key,), record.tp, record.offset)
    if erased is not None:
        if _crosses(b, event):
            b.send(_login_forward(record, event, erased.erased_at_ms))
        elif _is_login(event, aliases):
            _unlink(plan, event, aliases)
            _record_sign_in(plan, b.devices, event, erased_name(erased.erased_at_ms))
        plan.outcomes.append(
            RecordOutcome(record, Kind.ERASED, event, detail="published before an erasure")
        )
        return
    # Before the login check: a sign-in to an ended session links its guest anew.
    _expire_here(b, key, event, record)
    # A sign-in its customer's session already applied is a duplicate: it must not
    # merge again (its guest may have signed in elsewhere since).
    if not _remembers(sessions.get(key), event):
        if _crosses(b, event):
            b.wait(key, _origin(record).id)
            b.send(_login_forward(record, event))
            plan.outcomes.append(RecordOutcome(record, Kind.FORWARDED, event, key))
            return
        if _is_login(event, aliases):
            _merge(plan, event, aliases, sessions, snapshot, limits, b.devices, b.floors)
    if via is not Via.FLOORED and _floor_elsewhere(b, key):
        _ask_floor(b, record, event, key, seen)
        return
    _apply(b, record, event, key, seen)


def _apply(b: _Batch, record: Record, event: AnyEvent, key: str, seen: bool = False) -> None:
    """Fold ``event`` into ``key``'s session (its merge, if a login, already done)."""
    plan, snapshot, limits, aliases, sessions = b.plan, b.snapshot, b.limits, b.aliases, b.sessions
    plan.read_keys.add(key)
    session = sessions.get(key) or _fresh(
        key, event.customer_id, snapshot, sessions, aliases, b.floors
    )
    folded_from, returned = session, None
    if isinstance(event, SessionUnmerged) and not _remembers(session, event):
        undone = split(session, event.payload.anonymous_id, event.occurred_at)
        if isinstance(undone, Rejected):
            plan.outcomes.append(_rejected(record, undone, event, key))
            return
        folded_from, returned = undone.customer, undone.guest_lines
    if seen or _applied_elsewhere(plan, event, key, aliases, b.devices, sessions):
        outcome: Outcome = SEEN
    else:
        outcome = fold(folded_from, event, limits)
    if isinstance(outcome, Rejected):
        plan.outcomes.append(_rejected(record, outcome, event, key))
    elif isinstance(outcome, Duplicate):
        plan.outcomes.append(RecordOutcome(record, Kind.DUPLICATE, event, key, detail=outcome.why))
    else:
        assert isinstance(outcome, Applied)
        _effects(plan, key, session, outcome.session, event, record.replayed_from)
        if returned is not None and isinstance(event, SessionUnmerged):
            guest = event.payload.anonymous_id
            if b.here(guest):
                _give_back_here(b, record, event, returned)
            else:
                b.send(
                    Forward(
                        kind="unmerge", key=guest, origin=_origin(record),
                        event=_text(record), replayed_from=record.replayed_from,
                        customer_id=key, guest_id=guest, lines=returned,
                        floor=session.version,
                    )
                )  # fmt: skip
        sessions[key] = outcome.session
        # A guest merged earlier in the batch and started again keeps its delete:
        # the commit applies deletes before writes, so the merge moves what the
        # guest had (its committed journey included) and the new session stands,
        # as if the two had come in two batches.
        plan.writes[key] = outcome.session
        plan.outcomes.append(RecordOutcome(record, Kind.APPLIED, event, key))


def _forwarded(b: _Batch, record: Record) -> None:
    """Plan one record of ``session-forwards``: work another partition handed here."""
    plan = b.plan
    fwd = read_forward(record.value)
    if fwd is None:
        plan.outcomes.append(
            _rejected(record, Rejected(Reason.INVALID_EVENT, "not a session-forwards record"))
        )
        return
    if record.forwarded is not None:
        # The relay sends again what it sent before a crash: the same origin's entry ids.
        source, seq = record.forwarded
        mark = plan.forward_marks.get(source, b.snapshot.forwarded.get(source))
        if not seq_after(seq, mark):
            plan.outcomes.append(RecordOutcome(record, Kind.DUPLICATE, detail="forward sent again"))
            return
        plan.forward_marks[source] = seq
    origin = Record(
        fwd.origin.topic, fwd.origin.partition, fwd.origin.offset, None,
        None if fwd.event is None else fwd.event.encode(), replayed_from=fwd.replayed_from,
    )  # fmt: skip
    event = None if origin.value is None else decode(origin.value)
    if isinstance(event, Rejected):  # never sent so: it was valid where it came in
        plan.outcomes.append(_rejected(origin, event))
        return
    if fwd.kind == "alias_end":
        _alias_end(b, origin, event, fwd)
    elif event is None:
        plan.outcomes.append(
            _rejected(record, Rejected(Reason.INVALID_EVENT, f"{fwd.kind} forward without event"))
        )
    elif fwd.kind == "login":
        _guest_login(b, origin, event, fwd)
    elif fwd.kind == "merge":
        _customer_merge(b, origin, event, fwd)
    elif fwd.kind == "event" and fwd.guest_id is None:
        _source(b, origin, event)
    elif fwd.kind == "event":
        _source(b, origin, event, fwd.key, fwd.seen, Via.FORWARD)
    elif fwd.kind == "ask":
        _answer_floor(b, origin, event, fwd)
    elif fwd.kind == "floor":
        _floored(b, origin, event, fwd)
    else:
        assert isinstance(event, SessionUnmerged)
        floored = b.aliases.get(fwd.key) == fwd.customer_id
        if floored:
            # The guest's new session goes on from the versions its alias showed it.
            b.floors[fwd.key] = max(b.floors.get(fwd.key, 0), fwd.floor)
        _give_back_here(b, origin, event, list(fwd.lines), floored)
        plan.outcomes.append(RecordOutcome(origin, Kind.APPLIED, None, fwd.key))


def _give_back_here(
    b: _Batch,
    record: Record,
    event: SessionUnmerged,
    lines: list[CartLine],
    floored: bool = False,
) -> None:
    """``_give_back`` on this partition, once the guest's version floor is known: with
    its alias leading to another partition's customer, that partition is asked first
    (the alias ends now, so the guest's events wait here for the answer)."""
    guest = event.payload.anonymous_id
    if not floored and _floor_elsewhere(b, guest) and guest not in b.pending:
        target = b.aliases.pop(guest)
        b.plan.aliases.pop(guest, None)
        b.plan.alias_deletes.add(guest)
        b.wait(guest, _origin(record).id)
        b.send(
            Forward(
                kind="ask", key=target, origin=_origin(record), event=_text(record),
                replayed_from=record.replayed_from, guest_id=guest, customer_id=target,
                lines=lines,
            )
        )  # fmt: skip
        return
    _give_back(
        b.plan, event, lines, b.sessions, b.aliases, b.snapshot, b.floors, b.forgotten,
        b.limits,
    )  # fmt: skip


def _crosses(b: _Batch, event: AnyEvent) -> bool:
    """Whether ``event`` signs a guest of another partition in (a login to hand over)."""
    anon, customer = event.anonymous_id, event.customer_id
    return customer is not None and anon is not None and anon != customer and not b.here(anon)


def _login_forward(record: Record, event: AnyEvent, erased_at_ms: int | None = None) -> Forward:
    assert event.anonymous_id is not None
    return Forward(
        kind="login", key=event.anonymous_id, origin=_origin(record), event=_text(record),
        replayed_from=record.replayed_from, customer_id=event.customer_id,
        erased_at_ms=erased_at_ms,
    )  # fmt: skip


def _forward_guest_event(b: _Batch, record: Record, event: AnyEvent, key: str) -> None:
    """A guest's event whose alias leads to a customer of another partition goes there.

    Whether a session of this partition applied it already (the guest's own, a
    customer's it signed in to) is judged here and travels with it (``seen``):
    the customer side decides at the same point of the event's way as here."""
    plan = b.plan
    seen = _applied_elsewhere(plan, event, key, b.aliases, b.devices, b.sessions)
    if event.anonymous_id is not None and b.aliases.get(event.anonymous_id) == key:
        # Set again: an alias to another partition lives a session TTL past its last use.
        plan.aliases[event.anonymous_id] = key
    b.send(
        Forward(
            kind="event", key=key, origin=_origin(record), event=_text(record),
            replayed_from=record.replayed_from, guest_id=event.anonymous_id, seen=seen,
        )
    )  # fmt: skip
    plan.outcomes.append(RecordOutcome(record, Kind.FORWARDED, event, key))


def _misplaced(b: _Batch, record: Record, event: AnyEvent, own: str) -> None:
    """A record on another partition than its key's (a producer whose partitioner is not
    Kafka's murmur2, or a partition count changed): it goes where its key lives, to be
    routed there as if it had come there."""
    b.plan.misplaced += 1
    b.send(
        Forward(
            kind="event", key=own, origin=_origin(record), event=_text(record),
            replayed_from=record.replayed_from,
        )
    )  # fmt: skip
    b.plan.outcomes.append(RecordOutcome(record, Kind.FORWARDED, event, own))


def _alias_ended_here(b: _Batch, event: AnyEvent, key: str) -> bool:
    """Whether a guest's event forwarded to ``key`` found the session its alias pointed
    at gone: ended on the event's time, or no longer linked (ended earlier, erased)."""
    anon = event.anonymous_id
    if anon is None or anon not in b.links_of(key):
        return True
    target = b.sessions.get(key)
    return target is not None and ended(
        target, event.occurred_at, b.limits.guest_ttl, b.limits.session_ttl
    )


def _bounce(b: _Batch, record: Record, event: AnyEvent, key: str) -> None:
    """Send a guest's event back: its alias ends, and the guest side routes it anew."""
    assert event.anonymous_id is not None
    target = b.sessions.get(key)
    floor = target.version if target is not None else b.floors.get(key, 0)
    b.send(
        Forward(
            kind="alias_end", key=event.anonymous_id, origin=_origin(record),
            event=_text(record), replayed_from=record.replayed_from, customer_id=key,
            guest_id=event.anonymous_id, floor=floor,
        )
    )  # fmt: skip
    b.plan.outcomes.append(RecordOutcome(record, Kind.FORWARDED, event, event.anonymous_id))


def _expire_here(b: _Batch, key: str, event: AnyEvent, record: Record) -> None:
    """``_expire``, and the aliases of guests of other partitions linked to the ended
    session end too: each guest side is told (as ``commit.lua`` ends local ones)."""
    linked = b.links_of(key)
    before = b.sessions.get(key)
    _expire(b.plan, key, event, b.sessions, b.aliases, b.floors, b.forgotten, b.limits)
    if b.place is None or key not in b.plan.expired or b.sessions.get(key) is before:
        return
    for anon in sorted(linked):
        if not b.here(anon):
            b.send(
                Forward(
                    kind="alias_end", key=anon, origin=_origin(record), customer_id=key,
                    guest_id=anon, floor=b.plan.expired[key],
                )
            )  # fmt: skip


def _floor_elsewhere(b: _Batch, key: str) -> bool:
    """Whether ``key``'s new session needs the version of a session of another partition:
    a shared device's guest whose alias leads to a customer there (``_fresh``)."""
    target = b.aliases.get(key)
    return key not in b.sessions and target is not None and not b.here(target)


def _ask_floor(b: _Batch, record: Record, event: AnyEvent, key: str, seen: bool) -> None:
    """Ask the customer's partition for the version a guest's new session goes on from;
    the guest's session waits for the answer, and the event with it."""
    b.wait(key, _origin(record).id)
    b.send(
        Forward(
            kind="ask", key=b.aliases[key], origin=_origin(record), event=_text(record),
            replayed_from=record.replayed_from, guest_id=key, seen=seen,
        )
    )  # fmt: skip
    b.plan.outcomes.append(RecordOutcome(record, Kind.FORWARDED, event, key))


def _answer_floor(b: _Batch, origin: Record, event: AnyEvent, fwd: Forward) -> None:
    """Tell a guest's partition the version its alias's customer has now."""
    current = b.sessions.get(fwd.key)
    b.send(
        fwd.model_copy(
            update={
                "kind": "floor", "key": fwd.guest_id, "customer_id": fwd.key,
                "floor": current.version if current is not None else 0,
            }
        )
    )  # fmt: skip
    b.plan.outcomes.append(RecordOutcome(origin, Kind.FORWARDED, event, fwd.guest_id))


def _floored(b: _Batch, origin: Record, event: AnyEvent, fwd: Forward) -> None:
    """The answer to ``_ask_floor``: the event, then what the guest's session held."""
    key = fwd.key
    waiting = b.pending.get(key)
    if waiting is None or waiting.awaiting != fwd.origin.id:
        b.plan.outcomes.append(
            RecordOutcome(origin, Kind.DUPLICATE, event, key, detail="no session waits for it")
        )
        return
    b.release(key)
    if isinstance(event, SessionUnmerged) and event.payload.anonymous_id == key:
        # An undo's give-back asked: the alias it ended led to ``customer_id``.
        b.floors[key] = max(b.floors.get(key, 0), fwd.floor)
        _give_back_here(b, origin, event, list(fwd.lines))
        b.plan.outcomes.append(RecordOutcome(origin, Kind.APPLIED, None, key))
    else:
        if b.aliases.get(key) == fwd.customer_id:
            b.floors[key] = max(b.floors.get(key, 0), fwd.floor)
        _source(b, origin, event, key, fwd.seen, Via.FLOORED)
    _release_held(b, waiting)


def _guest_login(b: _Batch, origin: Record, event: AnyEvent, fwd: Forward) -> None:
    """The guest side of a login from another partition: take the guest's session
    apart (unless the device is shared), point its alias at the customer, answer."""
    plan, aliases = b.plan, b.aliases
    assert event.anonymous_id is not None
    assert event.customer_id is not None
    if fwd.erased_at_ms is not None:
        if _is_login(event, aliases):
            _unlink(plan, event, aliases)
            _record_sign_in(plan, b.devices, event, erased_name(fwd.erased_at_ms))
        plan.outcomes.append(
            RecordOutcome(origin, Kind.ERASED, event, detail="published before an erasure")
        )
        return
    answer = Forward(
        kind="merge", key=event.customer_id, origin=fwd.origin, event=fwd.event,
        replayed_from=fwd.replayed_from, customer_id=event.customer_id,
        guest_id=event.anonymous_id, linked=True,
    )  # fmt: skip
    if _is_login(event, aliases):
        guest, ended_version, journey = _detach(b, event)
        answer = answer.model_copy(
            update={
                "linked": False, "guest": guest, "ended_version": ended_version,
                "journey": journey,
            }
        )  # fmt: skip
    b.send(answer)
    plan.outcomes.append(RecordOutcome(origin, Kind.FORWARDED, event, event.customer_id))


def _detach(b: _Batch, event: AnyEvent) -> tuple[Session | None, int, list[JourneyItem]]:
    """``_merge``'s guest half: (the guest's session, the version an ended one reached,
    its journey), with the guest's alias pointing at the customer."""
    plan, sessions, limits = b.plan, b.sessions, b.limits
    customer_id, anonymous_id = event.customer_id, event.anonymous_id
    assert customer_id is not None
    assert anonymous_id is not None
    plan.read_keys.add(anonymous_id)
    if _shared(event, b.devices, limits, signing_in=customer_id):
        guest = None
        plan.kept_apart["sign_in"] += 1
    else:
        guest = sessions.pop(anonymous_id, None)
    ended_version = 0
    if guest is not None and ended(guest, event.occurred_at, limits.guest_ttl, limits.session_ttl):
        ended_version = guest.version
        plan.expired[anonymous_id] = guest.version
        plan.cleared[anonymous_id] = None
        plan.journey = [e for e in plan.journey if e.key != anonymous_id]
        plan.writes.pop(anonymous_id, None)
        plan.deletes.setdefault(anonymous_id, customer_id)
        guest = None
    _record_sign_in(plan, b.devices, event, customer_id)
    journey: list[JourneyItem] = []
    if guest is not None:
        plan.writes.pop(anonymous_id, None)
        if anonymous_id not in plan.deletes and anonymous_id not in plan.cleared:
            # What it had committed leaves with it (the commit deletes it here).
            journey = list(b.snapshot.journeys.get(anonymous_id, ()))
            plan.handed.add(anonymous_id)
        plan.deletes.setdefault(anonymous_id, customer_id)
        journey += [
            JourneyItem(score_ms=e.score_ms, member=e.member.decode())
            for e in plan.journey
            if e.key == anonymous_id
        ]
        plan.journey = [e for e in plan.journey if e.key != anonymous_id]
    b.aliases[anonymous_id] = customer_id
    plan.aliases[anonymous_id] = customer_id
    plan.alias_deletes.discard(anonymous_id)
    return guest, ended_version, journey


def _customer_merge(b: _Batch, origin: Record, event: AnyEvent, fwd: Forward) -> None:
    """The customer side of a login handed over: merge what the guest side sent, fold
    the sign-in, then what the session held while it waited."""
    plan, key = b.plan, fwd.key
    waiting = b.pending.get(key)
    if waiting is None or waiting.awaiting != fwd.origin.id:
        plan.outcomes.append(
            RecordOutcome(origin, Kind.DUPLICATE, event, key, detail="no session waits for it")
        )
        return
    b.release(key)
    erased = covering(b.snapshot.erasures, (key,), origin.tp, origin.offset)
    if erased is not None:
        if not fwd.linked:
            # The guest side linked it already: it takes that back, and its session.
            b.send(
                Forward(
                    kind="alias_end", key=fwd.guest_id or "", origin=fwd.origin,
                    event=fwd.event, customer_id=key, guest_id=fwd.guest_id,
                    guest=fwd.guest, journey=fwd.journey, erased_at_ms=erased.erased_at_ms,
                )
            )  # fmt: skip
        plan.outcomes.append(
            RecordOutcome(origin, Kind.ERASED, event, detail="published before an erasure")
        )
    else:
        if not fwd.linked:
            _adopt(b, event, fwd)
        _apply(b, origin, event, key)
    _release_held(b, waiting)


def _release_held(b: _Batch, waiting: Pending) -> None:
    """Plan what a session held while it waited, in the order it came."""
    for held in waiting.held:
        record = Record(
            held.origin.topic, held.origin.partition, held.origin.offset, None, held.value,
            replayed_from=held.replayed_from,
        )  # fmt: skip
        again = decode(held.value)
        assert not isinstance(again, Rejected), "only valid events are held"
        _source(b, record, again, held.key, held.seen, Via(held.via))


def _adopt(b: _Batch, event: AnyEvent, fwd: Forward) -> None:
    """``_merge``'s customer half: the guest's session, as the guest side sent it,
    merged into the customer's; its journey and link follow."""
    plan, sessions, key = b.plan, b.sessions, fwd.key
    anonymous_id = fwd.guest_id
    assert anonymous_id is not None
    plan.read_keys.add(key)
    base = sessions.get(key) or _fresh(key, key, b.snapshot, floors=b.floors)
    merged = merge_guest(base, fwd.guest, key, anonymous_id, b.limits, event.occurred_at)
    version = max(merged.session.version, fwd.ended_version) + 1
    session = merged.session.model_copy(update={"version": version})
    sessions[key] = session
    plan.writes[key] = session
    plan.dropped_lines.extend(merged.dropped)
    plan.journey.extend(Entry(key, j.score_ms, j.member.encode()) for j in fwd.journey)
    plan.links.add((anonymous_id, key))


def _alias_end(b: _Batch, origin: Record, event: AnyEvent | None, fwd: Forward) -> None:
    """The guest side hears that its alias no longer leads to a live session."""
    plan, aliases, anon = b.plan, b.aliases, fwd.key
    if aliases.get(anon) == fwd.customer_id:
        if fwd.erased_at_ms is None:
            _drop_alias(plan, aliases, anon, fwd.floor, b.sessions, b.floors, b.forgotten)
        else:
            aliases.pop(anon, None)
            plan.aliases.pop(anon, None)
            plan.alias_deletes.add(anon)
    if fwd.erased_at_ms is not None:
        _unsign(b, anon, fwd)
        plan.outcomes.append(
            RecordOutcome(origin, Kind.ERASED, event, detail="published before an erasure")
        )
    elif event is not None:
        _source(b, origin, event)
    else:
        plan.outcomes.append(RecordOutcome(origin, Kind.APPLIED, None, anon))


def _unsign(b: _Batch, anon: str, fwd: Forward) -> None:
    """A sign-in whose customer was erased before its merge landed: the device keeps it
    under the erased name, and the guest gets back what it had (as if never merged)."""
    plan, customer = b.plan, fwd.customer_id
    assert customer is not None
    assert fwd.erased_at_ms is not None
    links = b.devices.get(anon, {})
    if customer in links:
        at_ms = links.pop(customer)
        name = erased_name(fwd.erased_at_ms)
        b.devices[anon] = linked(links, name, at_ms)
        plan.device_renames.append((anon, customer, name))
    if fwd.guest is not None and anon not in b.sessions:
        b.sessions[anon] = fwd.guest
        plan.writes[anon] = fwd.guest
        plan.journey.extend(Entry(anon, j.score_ms, j.member.encode()) for j in fwd.journey)


def _origin(record: Record) -> Origin:
    return Origin(topic=record.topic, partition=record.partition, offset=record.offset)


def _text(record: Record) -> str | None:
    return None if record.value is None else record.value.decode()


def _expire(
    plan: Plan,
    key: str,
    event: AnyEvent,
    sessions: dict[str, Session],
    aliases: dict[str, str],
    floors: dict[str, int],
    forgotten: set[str],
    limits: Limits,
) -> None:
    """End ``key``'s session if ``event`` finds it idle past its TTL: its successor,
    one version on, is written whatever becomes of the event (as a merge is).

    A session Redis already forgot (only its version floor left) ended the same
    way, so a key's versions do not depend on whether its TTL ran out."""
    current = sessions.get(key)
    if current is None:
        if key not in forgotten:
            return
        forgotten.discard(key)
        customer_id = key if event.customer_id == key else None
        current = _new_session(key, customer_id).model_copy(update={"version": floors[key]})
    elif not ended(current, event.occurred_at, limits.guest_ttl, limits.session_ttl):
        return
    after = successor(current)
    sessions[key] = after
    plan.writes[key] = after
    plan.expired[key] = current.version
    if key not in plan.deletes:
        plan.cleared[key] = None
    plan.journey = [e for e in plan.journey if e.key != key]
    # The commit empties the ended session's link set before it adds the batch's links.
    plan.links = {(anon, into) for anon, into in plan.links if into != key}
    for guest, into in plan.deletes.items():
        if into == key:
            plan.cleared[guest] = None
    for anon in [a for a, target in aliases.items() if target == key]:
        _drop_alias(plan, aliases, anon, current.version, sessions, floors, forgotten)


def _end_stale_alias(
    plan: Plan,
    event: AnyEvent,
    aliases: dict[str, str],
    sessions: Mapping[str, Session],
    floors: dict[str, int],
    forgotten: set[str],
    limits: Limits,
) -> None:
    """A guest's alias ends with the session it points at: a guest event that finds
    its customer's session ended starts the guest's own again (versions going on
    from the customer's, as for any guest merged before)."""
    anon = event.anonymous_id
    if event.customer_id is not None or anon is None or anon not in aliases:
        return
    target = sessions.get(aliases[anon])
    if target is None or not ended(target, event.occurred_at, limits.guest_ttl, limits.session_ttl):
        return
    _drop_alias(plan, aliases, anon, target.version, sessions, floors, forgotten)


def _drop_alias(
    plan: Plan,
    aliases: dict[str, str],
    anon: str,
    floor: int,
    sessions: Mapping[str, Session],
    floors: dict[str, int],
    forgotten: set[str],
) -> None:
    """The guest's alias ends; without a session of its own, the guest keeps the version
    floor of the session it pointed at, as one Redis forgot (the commit stores it, as
    ``commit.lua`` does for the aliases it ends itself), so its next session goes on."""
    aliases.pop(anon, None)
    plan.aliases.pop(anon, None)
    plan.alias_deletes.add(anon)
    if anon not in sessions:
        floors[anon] = max(floors.get(anon, 0), floor)
        forgotten.add(anon)
        plan.floors[anon] = floors[anon]


def route(event: AnyEvent, aliases: Mapping[str, str]) -> str:
    """The session key an event applies to: the customer, the guest's alias, or the guest."""
    if event.customer_id is not None:
        return event.customer_id
    assert event.anonymous_id is not None  # the envelope guarantees one of the two
    return aliases.get(event.anonymous_id, event.anonymous_id)


def _is_login(event: AnyEvent, aliases: Mapping[str, str]) -> bool:
    return (
        event.customer_id is not None
        and event.anonymous_id is not None
        and event.anonymous_id != event.customer_id
        and aliases.get(event.anonymous_id) != event.customer_id
    )


def _fresh(
    key: str,
    customer_id: str | None,
    snapshot: Snapshot,
    sessions: Mapping[str, Session] | None = None,
    aliases: Mapping[str, str] | None = None,
    floors: Mapping[str, int] | None = None,
) -> Session:
    """A new session whose versions go on from any the key had before, so a client's
    ``Last-Event-ID`` or ``min_version`` never points past it: after an erasure, the
    erased one's; for a shared device's guest id merged into a customer before, the
    customer's (the guest's versions ended below it when it merged)."""
    session = _new_session(key, customer_id)
    erasure = snapshot.erasures.get(key)
    floor = erasure.floors.get(key, 0) if erasure is not None else 0
    floor = max(floor, (floors or {}).get(key, 0))
    target = (aliases or {}).get(key)
    merged_into = (sessions or {}).get(target) if target is not None else None
    if merged_into is not None:
        floor = max(floor, merged_into.version)
    return session.model_copy(update={"version": floor}) if floor else session


def _merge(
    plan: Plan,
    event: AnyEvent,
    aliases: dict[str, str],
    sessions: dict[str, Session],
    snapshot: Snapshot,
    limits: Limits,
    devices: dict[str, dict[str, int]],
    floors: dict[str, int],
) -> None:
    customer_id, anonymous_id = event.customer_id, event.anonymous_id
    assert customer_id is not None
    assert anonymous_id is not None
    plan.read_keys.update((customer_id, anonymous_id))
    if _shared(event, devices, limits, signing_in=customer_id):
        # The guest session is the device's, not this customer's: it stays.
        guest = None
        plan.kept_apart["sign_in"] += 1
    else:
        guest = sessions.pop(anonymous_id, None)
    ended_guest = guest is not None and ended(
        guest, event.occurred_at, limits.guest_ttl, limits.session_ttl
    )
    ended_version = 0
    if guest is not None and ended_guest:
        # An ended guest brings nothing to the merge; its session and journey just go.
        # Its versions still end below the customer's, as a merged guest's do.
        ended_version = guest.version
        plan.expired[anonymous_id] = guest.version
        plan.cleared[anonymous_id] = None
        plan.journey = [e for e in plan.journey if e.key != anonymous_id]
        plan.writes.pop(anonymous_id, None)
        plan.deletes.setdefault(anonymous_id, customer_id)
        guest = None
    _record_sign_in(plan, devices, event, customer_id)
    base = sessions.get(customer_id) or _fresh(customer_id, customer_id, snapshot, floors=floors)
    merged = merge_guest(base, guest, customer_id, anonymous_id, limits, event.occurred_at)
    # The merge is a change of its own: it gets a version before the event is folded.
    version = max(merged.session.version, ended_version) + 1
    session = merged.session.model_copy(update={"version": version})
    sessions[customer_id] = session
    plan.writes[customer_id] = session
    plan.dropped_lines.extend(merged.dropped)
    if guest is not None:
        plan.writes.pop(anonymous_id, None)
        # What the guest had committed went to the batch's first merge of it (a later
        # one takes only what the guest did since, in the batch's journey entries).
        plan.deletes.setdefault(anonymous_id, customer_id)
        plan.journey = moved(plan.journey, anonymous_id, customer_id)
    aliases[anonymous_id] = customer_id
    plan.aliases[anonymous_id] = customer_id
    plan.links.add((anonymous_id, customer_id))
    plan.alias_deletes.discard(anonymous_id)


def _applied_elsewhere(
    plan: Plan,
    event: AnyEvent,
    key: str,
    aliases: Mapping[str, str],
    devices: Mapping[str, Mapping[str, int]],
    sessions: Mapping[str, Session],
) -> bool:
    """Whether a guest's event, routed to ``key``, was applied where the guest's events
    went before: its own session, the one its alias points at, or that of a customer it
    signed in to (its device's sign-ins name them). A sign-in elsewhere, an undo or the
    shared-device guard (each customer's newest sign-in counts, so later sign-ins change
    its verdict at a given time) change where a guest's events go, not where a copy's
    original went; an event id is one event's, so a session that remembers it applied
    this very event. The ids stay where they were applied: an erasure of that session
    takes them, as it must."""
    anon = event.anonymous_id
    if anon is None or event.customer_id is not None:
        return False
    for other in dict.fromkeys((anon, aliases.get(anon, anon), *devices.get(anon, {}))):
        if other != key and _remembers(sessions.get(other), event):
            # Only that session's version matters: no other worker adds this id to a
            # session (the guest's records are on this partition).
            plan.read_keys.add(other)
            return True
    return False


def _remembers(session: Session | None, event: AnyEvent) -> bool:
    """Whether ``session`` applied ``event`` recently (its event id is in the window)."""
    return session is not None and event.event_id in session.recent_event_ids


def _effects(
    plan: Plan,
    key: str,
    before: Session,
    after: Session,
    event: AnyEvent,
    replayed_from: str | None = None,
) -> None:
    """The journey entry, KPI increments and notifications of one applied event."""
    plan.journey.append(entry(key, event, replayed_from))
    pair = count(plan.kpis, before, after, event)
    if pair is not None:
        plan.notifications.append(resumed(key, after, event, pair))


def _guest_ids(event: AnyEvent) -> tuple[str, ...]:
    """The guest ids an event depends on: its own, and the one an unmerge names."""
    ids = () if event.anonymous_id is None else (event.anonymous_id,)
    if isinstance(event, SessionUnmerged):
        ids = (*ids, event.payload.anonymous_id)
    return ids


def _give_back(
    plan: Plan,
    event: SessionUnmerged,
    lines: list[CartLine],
    sessions: dict[str, Session],
    aliases: dict[str, str],
    snapshot: Snapshot,
    floors: dict[str, int],
    forgotten: set[str],
    limits: Limits,
) -> None:
    """An unmerge: the guest's lines become its own session again, its id its own.

    The event ids of the guest's events stay with the customer's session, which
    applied them (a copy is found there, ``_applied_elsewhere``). A guest merged
    earlier in the batch keeps its delete: the commit applies deletes before writes,
    so the merge moves what the guest had committed (its journey) to the customer and
    the restored session stands, as in two batches."""
    guest = event.payload.anonymous_id
    plan.read_keys.add(guest)
    _expire(plan, guest, event, sessions, aliases, floors, forgotten, limits)
    base = sessions.get(guest) or _fresh(guest, None, snapshot, sessions, aliases, floors)
    have = {line.sku for line in base.cart}
    cart = [*base.cart, *(line for line in lines if line.sku not in have)]
    restored = with_cart(base, cart).model_copy(
        update={
            "anonymous_ids": base.anonymous_ids or [guest],
            "cart_path": base.cart_path or list(dict.fromkeys(ln.channel for ln in cart)),
            "version": base.version + 1,
        }
    )
    sessions[guest] = restored
    plan.writes[guest] = restored
    aliases.pop(guest, None)
    plan.aliases.pop(guest, None)
    plan.alias_deletes.add(guest)


def _guarded_route(
    plan: Plan,
    event: AnyEvent,
    aliases: Mapping[str, str],
    devices: Mapping[str, Mapping[str, int]],
    limits: Limits,
) -> str:
    """``route``, except that a shared device's guest activity stays the device's."""
    key = route(event, aliases)
    anon = event.anonymous_id
    if anon is None or key == anon or event.customer_id is not None:
        return key
    if not _shared(event, devices, limits):
        return key
    plan.kept_apart["guest_event"] += 1
    return anon


def _record_sign_in(
    plan: Plan, devices: dict[str, dict[str, int]], event: AnyEvent, customer: str
) -> None:
    """Count a sign-in on the event's device (under an erased customer's anonymous name
    when the sign-in itself was erased)."""
    assert event.anonymous_id is not None
    at_ms = _ms(event)
    devices[event.anonymous_id] = linked(devices.get(event.anonymous_id, {}), customer, at_ms)
    plan.device_links.append((event.anonymous_id, customer, at_ms))


def _shared(
    event: AnyEvent,
    devices: Mapping[str, Mapping[str, int]],
    limits: Limits,
    signing_in: str | None = None,
) -> bool:
    links = devices.get(event.anonymous_id or "")
    if not links and signing_in is None:
        return False
    return is_shared(
        links or {},
        _ms(event),
        limits.shared_device_customers,
        limits.shared_device_window,
        signing_in,
    )


def _ms(event: AnyEvent) -> int:
    return int(event.occurred_at.timestamp() * 1000)


def _unlink(plan: Plan, event: AnyEvent, aliases: dict[str, str]) -> None:
    """A sign-in to an erased customer is skipped, but the device it names no longer
    belongs to whoever it pointed at before: live, that alias moved to the erased
    customer and the erasure deleted it. Doing the same in a replay keeps the
    guest's later records out of the previous owner's session."""
    assert event.anonymous_id is not None
    aliases.pop(event.anonymous_id, None)
    plan.aliases.pop(event.anonymous_id, None)
    plan.alias_deletes.add(event.anonymous_id)


def _rejected(
    record: Record, rejected: Rejected, event: AnyEvent | None = None, key: str | None = None
) -> RecordOutcome:
    return RecordOutcome(record, Kind.REJECTED, event, key, rejected.reason, rejected.detail)


def _record_expectations(
    plan: Plan,
    records: Sequence[Record],
    decoded: Sequence[AnyEvent | Rejected],
    snapshot: Snapshot,
    here: Callable[[str], bool],
) -> None:
    for key in dict.fromkeys((*plan.writes, *plan.deletes, *sorted(plan.read_keys))):
        current = snapshot.sessions.get(key)
        plan.expected_versions[key] = current.version if current else 0
    for event in decoded:
        if not isinstance(event, Rejected):
            for guest in _guest_ids(event):
                # Another partition's alias is that partition's to change and check.
                if here(guest):
                    plan.expected_aliases[guest] = snapshot.aliases.get(guest)
    for record in records:
        plan.expected_offsets[record.tp] = snapshot.offsets.get(record.tp, -1)
    plan.expected_erasure_epoch = snapshot.erasure_epoch


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
