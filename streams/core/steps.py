"""The planner's steps for one event on the keys it may change. Pure.

Routing (aliases, the shared-device guard), the end of an idle session and of
the aliases that led to it, the login merge, an undo's give-back, duplicates
by event id, and what a plan records it assumed (``_record_expectations``).
The driver is ``streams/core/plan.py``; the steps across partitions are
``streams/core/crossing_steps.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from schemas.events import AnyEvent, SessionUnmerged
from schemas.session import CartLine, Session
from streams.core.batch import (
    Kind,
    Plan,
    Record,
    RecordOutcome,
    Snapshot,
)
from streams.core.expiry import ended, successor
from streams.core.fold import (
    Limits,
    Rejected,
    with_cart,
)
from streams.core.fold import new_session as _new_session
from streams.core.journey import entry, moved
from streams.core.kpi_delta import count
from streams.core.merge import merge_guest
from streams.core.notifications import resumed
from streams.core.shared_device import is_shared, linked


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


def _take_guest(
    plan: Plan,
    event: AnyEvent,
    sessions: dict[str, Session],
    devices: dict[str, dict[str, int]],
    limits: Limits,
) -> tuple[Session | None, int]:
    """A login's guest half: (the guest's session the merge takes, or None; the version
    an ended one reached), with the sign-in recorded on the device."""
    customer_id, anonymous_id = event.customer_id, event.anonymous_id
    assert customer_id is not None
    assert anonymous_id is not None
    if _shared(event, devices, limits, signing_in=customer_id):
        # The guest session is the device's, not this customer's: it stays.
        guest = None
        plan.kept_apart["sign_in"] += 1
    else:
        guest = sessions.pop(anonymous_id, None)
    ended_version = 0
    if guest is not None and ended(guest, event.occurred_at, limits.guest_ttl, limits.session_ttl):
        # An ended guest brings nothing to the merge; its session and journey just go.
        # Its versions still end below the customer's, as a merged guest's do.
        ended_version = guest.version
        plan.expired[anonymous_id] = guest.version
        plan.cleared[anonymous_id] = None
        plan.journey = [e for e in plan.journey if e.key != anonymous_id]
        plan.writes.pop(anonymous_id, None)
        _delete(plan, anonymous_id, customer_id)
        guest = None
    _record_sign_in(plan, devices, event, customer_id)
    return guest, ended_version


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
    guest, ended_version = _take_guest(plan, event, sessions, devices, limits)
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
        _delete(plan, anonymous_id, customer_id)
        plan.journey = moved(plan.journey, anonymous_id, customer_id)
    aliases[anonymous_id] = customer_id
    plan.aliases[anonymous_id] = customer_id
    plan.links.add((anonymous_id, customer_id))
    plan.alias_deletes.discard(anonymous_id)


def _delete(plan: Plan, guest: str, into: str) -> None:
    """The commit deletes a merged guest's session and version floor before it keeps the
    batch's floors: one the batch gave the guest before merging it goes too, as it would
    in two batches."""
    plan.deletes.setdefault(guest, into)
    plan.floors.pop(guest, None)


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
