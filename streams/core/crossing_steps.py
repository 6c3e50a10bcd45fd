"""The planner's steps that cross partitions. Pure.

A login whose guest lives on another partition, a guest's event whose alias
leads there, an undo's give-back, a version floor another partition knows:
each goes out as a forward (``schemas/forward.py``) and is applied here when
one comes in (``docs/merge-across-partitions.md``). Mutually recursive with
the driver (``streams/core/plan.py``): a forward that lands applies events.
"""

from __future__ import annotations

from schemas.events import AnyEvent, SessionUnmerged
from schemas.forward import Forward, JourneyItem
from schemas.session import CartLine, Session
from streams.core import plan as planning
from streams.core.batch import (
    Kind,
    Record,
    RecordOutcome,
    Via,
    _Batch,
    _from_origin,
    _origin,
    _text,
)
from streams.core.crossing import Pending, read_forward, seq_after
from streams.core.decode import decode
from streams.core.erasure import covering
from streams.core.expiry import ended
from streams.core.fold import (
    Reason,
    Rejected,
)
from streams.core.journey import Entry
from streams.core.merge import merge_guest
from streams.core.shared_device import erased as erased_name
from streams.core.shared_device import linked
from streams.core.steps import (
    _applied_elsewhere,
    _delete,
    _drop_alias,
    _expire,
    _fresh,
    _give_back,
    _is_login,
    _record_sign_in,
    _rejected,
    _take_guest,
    _unlink,
)


def _forwarded(b: _Batch, record: Record) -> None:
    """Plan one record of ``session-forwards``: work another partition handed here."""
    plan = b.plan
    if record.foreign:
        # Another deployment's (another key prefix folding the same topics): not ours.
        plan.outcomes.append(
            RecordOutcome(record, Kind.ALREADY_APPLIED, detail="another deployment's forward")
        )
        return
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
    reflected = b.snapshot.reflected.get(fwd.key)
    if reflected is not None and reflected.get(record.tp, -1) >= record.offset:
        # A restore: the state restored for its key holds this forward already.
        plan.outcomes.append(RecordOutcome(record, Kind.ALREADY_APPLIED, detail="state holds it"))
        return
    if fwd.event is None and fwd.kind != "alias_end":
        plan.outcomes.append(
            _rejected(record, Rejected(Reason.INVALID_EVENT, f"{fwd.kind} forward without event"))
        )
        return
    plan.forwards_taken += 1
    origin = _from_origin(
        fwd.origin, None if fwd.event is None else fwd.event.encode(), fwd.replayed_from
    )
    event = None if origin.value is None else decode(origin.value)
    if isinstance(event, Rejected):  # never sent so: it was valid where it came in
        plan.outcomes.append(_rejected(origin, event))
        return
    if event is not None:
        event = planning.in_time(origin, event, b.limits)
    if fwd.kind == "alias_end":
        _alias_end(b, origin, event, fwd)
    elif event is None:
        raise AssertionError("only an alias_end goes without its event")
    elif fwd.kind == "login":
        _guest_login(b, origin, event, fwd)
    elif fwd.kind == "merge":
        _customer_merge(b, origin, event, fwd)
    elif fwd.kind == "event" and fwd.guest_id is None:
        planning._source(b, origin, event)
    elif fwd.kind == "event":
        planning._source(b, origin, event, fwd.key, fwd.seen, Via.FORWARD)
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
        plan.outcomes.append(RecordOutcome(origin, Kind.APPLIED, None, fwd.key, follow_up=True))


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
    """Tell a guest's partition the version its alias's customer has now; or, if that
    session ended by the event's time, that the alias ends (``_end_stale_alias``)."""
    current = b.sessions.get(fwd.key)
    if (
        not _gives_back(event, fwd.guest_id)
        and current is not None
        and ended(current, event.occurred_at, b.limits.guest_ttl, b.limits.session_ttl)
    ):
        # The guest side drops the alias, keeps this floor and routes the event anew.
        b.send(
            Forward(
                kind="alias_end", key=fwd.guest_id or "", origin=fwd.origin, event=fwd.event,
                replayed_from=fwd.replayed_from, customer_id=fwd.key, guest_id=fwd.guest_id,
                floor=current.version,
            )
        )  # fmt: skip
        b.plan.outcomes.append(RecordOutcome(origin, Kind.FORWARDED, event, fwd.guest_id))
        return
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
    if isinstance(event, SessionUnmerged) and _gives_back(event, key):
        # An undo's give-back asked: the alias it ended led to ``customer_id``.
        b.floors[key] = max(b.floors.get(key, 0), fwd.floor)
        _give_back_here(b, origin, event, list(fwd.lines))
        b.plan.outcomes.append(RecordOutcome(origin, Kind.APPLIED, None, key, follow_up=True))
    else:
        if b.aliases.get(key) == fwd.customer_id:
            b.floors[key] = max(b.floors.get(key, 0), fwd.floor)
        planning._source(b, origin, event, key, fwd.seen, Via.FLOORED)
    _release_held(b, waiting)


def _gives_back(event: AnyEvent, guest: str | None) -> bool:
    """Whether ``event`` is the undo whose give-back to ``guest`` asked for a floor."""
    return isinstance(event, SessionUnmerged) and event.payload.anonymous_id == guest


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
        # The customer side counted the sign-in erased already.
        plan.outcomes.append(
            RecordOutcome(
                origin, Kind.ERASED, event, detail="published before an erasure", follow_up=True
            )
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
    guest, ended_version = _take_guest(plan, event, sessions, b.devices, limits)
    journey: list[JourneyItem] = []
    if guest is not None:
        plan.writes.pop(anonymous_id, None)
        if anonymous_id not in plan.deletes and anonymous_id not in plan.cleared:
            # What it had committed leaves with it (the commit deletes it here).
            journey = list(b.snapshot.journeys.get(anonymous_id, ()))
            plan.handed.add(anonymous_id)
        _delete(plan, anonymous_id, customer_id)
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
        planning._apply(b, origin, event, key)
    _release_held(b, waiting)


def _release_held(b: _Batch, waiting: Pending) -> None:
    """Plan what a session held while it waited, in the order it came."""
    for held in waiting.held:
        record = _from_origin(held.origin, held.value, held.replayed_from)
        again = decode(held.value)
        assert not isinstance(again, Rejected), "only valid events are held"
        again = planning.in_time(record, again, b.limits)
        planning._source(b, record, again, held.key, held.seen, Via(held.via))


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
    # The answer to ``_ask_floor`` when the alias's session had ended: the guest's
    # session stops waiting, and what it held follows the event.
    waiting = b.pending.get(anon)
    asked = event is not None and waiting is not None and waiting.awaiting == fwd.origin.id
    if asked:
        b.release(anon)
    if aliases.get(anon) == fwd.customer_id:
        if fwd.erased_at_ms is None:
            _drop_alias(plan, aliases, anon, fwd.floor, b.sessions, b.floors, b.forgotten)
        else:
            aliases.pop(anon, None)
            plan.aliases.pop(anon, None)
            plan.alias_deletes.add(anon)
    if fwd.erased_at_ms is not None:
        _unsign(b, anon, fwd)
        # The customer side counted the sign-in erased already.
        plan.outcomes.append(
            RecordOutcome(
                origin, Kind.ERASED, event, detail="published before an erasure", follow_up=True
            )
        )
    elif event is not None:
        planning._source(b, origin, event)
    else:
        plan.outcomes.append(RecordOutcome(origin, Kind.APPLIED, None, anon, follow_up=True))
    if asked and waiting is not None:
        _release_held(b, waiting)


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
