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

from collections.abc import Iterable, Sequence

from schemas.events import AnyEvent, SessionUnmerged
from schemas.forward import Forward
from schemas.topics import SESSION_FORWARDS
from streams.core import crossing_steps as across
from streams.core.batch import (
    Kind,
    Needs,
    Plan,
    Record,
    RecordOutcome,
    Snapshot,
    Via,
    _Batch,
    _origin,
    _text,
    joined,
)
from streams.core.crossing import Pending, Placement, read_forward
from streams.core.decode import decode
from streams.core.erasure import covering
from streams.core.event_time import bounded, clamped
from streams.core.expiry import end_ms, ttl_seconds
from streams.core.fold import (
    DEFAULT_LIMITS,
    SEEN,
    Applied,
    Duplicate,
    Limits,
    Outcome,
    Rejected,
    fold,
)
from streams.core.log_reset import fingerprint
from streams.core.shared_device import erased as erased_name
from streams.core.steps import (
    _applied_elsewhere,
    _effects,
    _end_stale_alias,
    _fresh,
    _guarded_route,
    _guest_ids,
    _is_login,
    _merge,
    _record_expectations,
    _record_sign_in,
    _rejected,
    _remembers,
    _unlink,
    route,
)
from streams.core.unmerge import split

__all__ = [
    "Kind",
    "Needs",
    "Plan",
    "Record",
    "RecordOutcome",
    "Snapshot",
    "Via",
    "in_time",
    "joined",
    "needs",
    "plan_batch",
    "route",
]


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
    last: dict[str, Record] = {}
    for record, event in zip(records, decoded, strict=True):
        if record.offset <= applied_upto.get(record.tp, -1):
            plan.outcomes.append(RecordOutcome(record, Kind.ALREADY_APPLIED))
            continue
        applied_upto[record.tp] = record.offset
        last[record.tp] = record
        if record.topic == SESSION_FORWARDS:
            across._forwarded(b, record)
        elif isinstance(event, Rejected):
            plan.outcomes.append(_rejected(record, event))
        else:
            timed = in_time(record, event, limits)
            plan.clamped += clamped(event, timed)
            _source(b, record, timed)
    # Each partition's last applied record: the commit stores its offset and fingerprint.
    plan.offsets = {tp: r.offset for tp, r in last.items()}
    plan.fingerprints = {tp: fingerprint(r.key, r.value) for tp, r in last.items()}
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


def in_time(record: Record, event: AnyEvent, limits: Limits) -> AnyEvent:
    """``event`` with its time bounded by its source record's timestamp: where it came in,
    and again wherever a forward or a held entry brings it (they carry the timestamp)."""
    return bounded(
        event,
        record.timestamp_ms,
        limits.event_time_max_ahead,
        limits.event_time_max_behind,
        replayed=record.replayed_from is not None,
    )


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
                across._forward_guest_event(b, record, event, key)
            else:
                across._misplaced(b, record, event, own)
            return
    else:
        key = addressed
    if key in b.pending:
        # Held as routed now: its key and what was judged on the way stay decided.
        b.hold(key, record, key, seen, Via.FORWARD if via is Via.FORWARD else Via.ROUTED)
        plan.outcomes.append(RecordOutcome(record, Kind.HELD, event, key))
        return
    if via is Via.FORWARD and across._alias_ended_here(b, event, key):
        across._bounce(b, record, event, key)
        return
    erased = covering(snapshot.erasures, (key,), record.tp, record.offset)
    if erased is not None:
        if across._crosses(b, event):
            b.send(across._login_forward(record, event, erased.erased_at_ms))
        elif _is_login(event, aliases):
            _unlink(plan, event, aliases)
            _record_sign_in(plan, b.devices, event, erased_name(erased.erased_at_ms))
        plan.outcomes.append(
            RecordOutcome(record, Kind.ERASED, event, detail="published before an erasure")
        )
        return
    # Before the login check: a sign-in to an ended session links its guest anew.
    across._expire_here(b, key, event, record)
    # A sign-in its customer's session already applied is a duplicate: it must not
    # merge again (its guest may have signed in elsewhere since).
    if not _remembers(sessions.get(key), event):
        if across._crosses(b, event):
            b.wait(key, _origin(record).id)
            b.send(across._login_forward(record, event))
            plan.outcomes.append(RecordOutcome(record, Kind.FORWARDED, event, key))
            return
        if _is_login(event, aliases):
            _merge(plan, event, aliases, sessions, snapshot, limits, b.devices, b.floors)
    if via is not Via.FLOORED and across._floor_elsewhere(b, key):
        across._ask_floor(b, record, event, key, seen)
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
                across._give_back_here(b, record, event, returned)
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
