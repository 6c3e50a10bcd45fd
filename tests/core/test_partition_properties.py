"""Properties of the planner over several partitions. Pure, no processes.

Events are addressed as a producer sends them (``routed``: topic by type, key the
customer key, else the guest's, partition by murmur2 of the key, 3 or 4 partitions
per topic), so a customer's cart, browse and checkout events sit on one partition
number of three topics, a guest's on its own id's, which is its customer's or
another. A worker gets batches that mix partitions; after a crash or a rebalance a
partition's position goes back to an earlier offset and a range already applied
comes again, between other partitions' new records. The histories hold sign-ins
under every merge policy, ``session.unmerged``, shared devices (and devices the guard
never counts as shared), and run under small limits too (a dedupe window of 3 ids or
none, three cart lines), so the bounds are reached, not only declared.

Proves, comparing everything the commit stores (sessions byte for byte, aliases,
applied offsets and their fingerprints, journeys, KPI counters, the outbox, device
sign-ins, what an erasure of each customer reaches):

* rewinds interleaved with other partitions change nothing: the store equals that
  of the same batches without the records that came again, each of which is
  ``already_applied``; also with no event-id memory at all (a window of 0), so the
  applied offsets alone make redelivery harmless;
* batch boundaries across partitions change nothing: that store equals one clean
  pass, one record per batch (a guest signing in to two customers in one batch, or
  signing in and undone, is linked to each, and its committed journey goes where
  the first merge took it, as in separate batches);
* an event re-sent later (same ``event_id``, a new offset, after other events of
  its session, or after its guest signed in and was merged) is a ``duplicate`` by
  its id and the store is that of the history without the copy (copies of an event
  never applied, e.g. dead-lettered, are judged anew); also a guest's event re-sent
  after its guest signed in to another customer, after an undo of its sign-in, or
  kept apart on a shared device (or no longer), which a story of one guest between
  customers reaches often;
* beyond the window the event-id memory no longer knows an event: the copy is
  judged as a new event (an add is added again); with windows of 1-4 ids, every
  copy is caught exactly when its id is among the last ``window`` applied to its
  session, and each session keeps exactly those;
* every session stays within the line limit (cart and set-aside lines) and the window.

Each property asserts, after its examples, that they reached what it is about (a
rewind next to another partition's new records, redelivery with no event-id memory,
merges under every policy, from the customer's partition and from another, applied
undos, a full cart, lines a merge dropped at the cap, forgotten ids, copies within
and beyond the window, a guest's copies after what its guest did since); under the
derandomized profile the counts are the same on every run.

The tests at the end pin, on the smallest history that shows each, what these
properties once found the planner getting wrong.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, settings, target
from hypothesis import strategies as st

from schemas.events import SessionUnmerged
from schemas.topics import SOURCE_TOPICS
from streams.core.decode import decode
from streams.core.fold import DEFAULT_LIMITS, Limits, MergePolicy, Reason, Rejected
from streams.core.placement import partition_of
from streams.core.plan import Kind, Plan, Record, RecordOutcome
from tests.support.pure import MemoryState, add, ev, routed

# Partition counts of the source topics (all three have the same, as deployed).
PARTITIONS = (3, 4)
# Ids whose partitions (murmur2) put guests on customers' partitions and on others,
# at both counts (checked by the first test).
CUSTOMERS = ("c-1", "c-2", "c-6")
GUESTS = ("g-1", "g-3", "g-8")
SKUS = ("A", "B", "C", "D", "E")
CHANNELS = ("web", "mobile_app", "pos", "call_center", "kiosk", "social", "voice")
KINDS = (
    *("add",) * 8,
    "remove",
    "set",
    "clear",
    "view",
    "search",
    "start",
    "complete",
    "handoff",
    *("login",) * 2,
    *("unmerge",) * 2,
)
# Histories about guests signing in, elsewhere and again, and undos.
SIGN_INS = ("add", "add", "view", "login", "login", "login", "unmerge")
SMALL_WINDOW = 3
SMALL_CART = 3


def at(minute: int) -> str:
    return f"2026-11-24T{10 + minute // 60:02d}:{minute % 60:02d}:00Z"


@st.composite
def one_event(
    draw: st.DrawFn,
    n: int,
    logins: list[tuple[str, str]],
    kinds: Sequence[str],
    customers: Sequence[str],
    guests: Sequence[str],
    guests_only: bool = False,
) -> dict[str, Any]:
    """Event number ``n`` of a history; ``logins`` (customer, guest) so far, which an
    unmerge mostly names (an undo of a sign-in that never happened is refused).
    ``guests_only``: the customers only sign in and undo (a guest's story)."""
    kind = draw(st.sampled_from(kinds))
    common: dict[str, Any] = {
        "channel": draw(st.sampled_from(CHANNELS)),
        # A guest's story is told within minutes: its sign-ins come out of order often.
        "at": at(draw(st.integers(0, 9 if guests_only else 119))),
        "event_id": f"e{n}",
    }
    if kind == "login":
        pair = (draw(st.sampled_from(customers)), draw(st.sampled_from(guests)))
        logins.append(pair)
        return ev("session.identified", customer=pair[0], anon=pair[1], **common)
    if kind == "unmerge":
        if logins and draw(st.integers(0, 3)) > 0:
            customer, guest = draw(st.sampled_from(logins[-2:]))
        else:
            customer, guest = draw(st.sampled_from(customers)), draw(st.sampled_from(guests))
        return ev("session.unmerged", {"anonymous_id": guest}, customer=customer, **common)
    if not guests or kind == "handoff" or (not guests_only and draw(st.booleans())):
        common["customer"] = draw(st.sampled_from(customers))
    else:
        common["anon"] = draw(st.sampled_from(guests))
    sku = draw(st.sampled_from(SKUS))
    match kind:
        case "add":
            price = draw(st.sampled_from(("0.10", "9.99", "149.90")))
            currency = draw(st.sampled_from(("EUR", "EUR", "EUR", "EUR", "USD")))
            return ev(
                "cart.item_added", add(sku, draw(st.integers(1, 9)), price, currency), **common
            )
        case "remove":
            return ev("cart.item_removed", {"sku": sku}, **common)
        case "set":
            quantity = draw(st.integers(0, 5))
            return ev("cart.quantity_set", {"sku": sku, "quantity": quantity}, **common)
        case "clear":
            return ev("cart.cleared", **common)
        case "view":
            return ev("browse.product_viewed", {"sku": sku}, **common)
        case "search":
            return ev("browse.search", {"query": sku.lower()}, **common)
        case "start":
            return ev("checkout.started", **common)
        case "complete":
            order = draw(st.integers(0, 3))
            return ev("checkout.completed", {"order_id": f"o-{order}"}, **common)
        case _:
            common["channel"] = "pos"
            return ev("checkout.handoff_claimed", store_id="s-1", **common)


@st.composite
def histories(
    draw: st.DrawFn,
    max_size: int = 48,
    kinds: Sequence[str] = KINDS,
    guests: bool = True,
    one_guest: bool = False,
) -> list[dict[str, Any]]:
    """A history among a few of the customers and guests (a small cast, so carts fill up);
    ``one_guest``: one guest between two or three customers (its sign-ins move it on)."""
    customers = draw(
        st.lists(st.sampled_from(CUSTOMERS), min_size=2 if one_guest else 1, unique=True)
    )
    cast = draw(
        st.lists(
            st.sampled_from(GUESTS), min_size=1, max_size=1 if one_guest else None, unique=True
        )
    )
    size = draw(st.integers(1, max_size))
    logins: list[tuple[str, str]] = []
    return [
        draw(one_event(n, logins, kinds, customers, cast if guests else [], one_guest))
        for n in range(size)
    ]


@st.composite
def limits(
    draw: st.DrawFn,
    windows: Sequence[int] = (0, SMALL_WINDOW, 256),
    shared: Sequence[int] = (1, len(CUSTOMERS)),
) -> Limits:
    """The fold's definition: any merge policy, a window (0: no event-id memory),
    the default line limit or a small one, a device shared once two customers signed
    in on it (1, the default) or never (as many customers as the histories have)."""
    return Limits(
        dedup_window=draw(st.sampled_from(windows)),
        max_cart_lines=draw(st.sampled_from((SMALL_CART, DEFAULT_LIMITS.max_cart_lines))),
        merge_policy=draw(st.sampled_from(list(MergePolicy))),
        shared_device_customers=draw(st.sampled_from(shared)),
    )


@dataclass(frozen=True)
class Delivery:
    """What a worker received, batch by batch, and which of it came for the first time."""

    batches: list[list[Record]]
    # The same batches, each holding only records delivered for the first time.
    first: list[list[Record]]
    redelivered: int
    # Batches where a rewound partition's old records came next to another one's new records.
    interleaved: int


def by_partition(log: Sequence[Record]) -> dict[str, list[Record]]:
    """Each topic-partition's records in offset order."""
    out: dict[str, list[Record]] = {}
    for record in log:
        out.setdefault(record.tp, []).append(record)
    return out


@st.composite
def deliveries(
    draw: st.DrawFn, log: Sequence[Record], max_rewinds: int = 6, max_batch: int = 8
) -> Delivery:
    """Batches as a consumer of every partition fetches them: any mix of partitions,
    each partition in offset order, and up to ``max_rewinds`` times, anywhere (also
    after the end), one partition's position set back to an earlier offset."""
    logs = by_partition(log)
    position = dict.fromkeys(logs, 0)
    delivered = dict.fromkeys(logs, -1)
    rewinds = draw(st.integers(0, max_rewinds))
    batches: list[list[Record]] = []
    first: list[list[Record]] = []
    redelivered = interleaved = 0
    while True:
        left = sorted(tp for tp in logs if position[tp] < len(logs[tp]))
        started = sorted(tp for tp in logs if position[tp] > 0)
        if rewinds and started and (not left or draw(st.integers(0, 3)) == 0):
            rewinds -= 1
            tp = draw(st.sampled_from(started))
            position[tp] = draw(st.integers(0, position[tp] - 1))
            continue
        if not left:
            break
        batch: list[Record] = []
        new: list[Record] = []
        for _ in range(draw(st.integers(1, max_batch))):
            left = sorted(tp for tp in logs if position[tp] < len(logs[tp]))
            if not left:
                break
            tp = draw(st.sampled_from(left))
            record = logs[tp][position[tp]]
            position[tp] += 1
            batch.append(record)
            if record.offset > delivered[tp]:
                delivered[tp] = record.offset
                new.append(record)
        old = {r.tp for r in batch if r not in new}
        redelivered += len(batch) - len(new)
        interleaved += bool(old and {r.tp for r in new} - old)
        batches.append(batch)
        first.append(new)
    return Delivery(batches, [b for b in first if b], redelivered, interleaved)


@st.composite
def arrival(draw: st.DrawFn, log: Sequence[Record]) -> list[Record]:
    """One arrival order of ``log``: partitions interleaved, each in offset order."""
    logs = {tp: list(records) for tp, records in by_partition(log).items()}
    out: list[Record] = []
    while any(logs.values()):
        tp = draw(st.sampled_from(sorted(tp for tp, rest in logs.items() if rest)))
        out.append(logs[tp].pop(0))
    return out


@st.composite
def cuts(draw: st.DrawFn, records: list[Record]) -> list[list[Record]]:
    """``records`` cut into batches at drawn positions."""
    bounds = sorted(set(draw(st.lists(st.integers(1, max(1, len(records) - 1)), max_size=6))))
    edges = [0, *(b for b in bounds if b < len(records)), len(records)]
    return [records[lo:hi] for lo, hi in itertools.pairwise(edges)]


def run(batches: Iterable[Sequence[Record]], limits: Limits) -> tuple[MemoryState, list[Plan]]:
    state = MemoryState()
    return state, [state.process(batch, limits) for batch in batches]


def assert_same_store(
    got: MemoryState, want: MemoryState, *, what: str = "store", but: Iterable[str] = ()
) -> None:
    """Everything both stores hold is equal, by name (sessions as stored bytes)."""
    mine, theirs, skip = stored(got), stored(want), set(but)
    for name in (n for n in mine if n not in skip):
        assert mine[name] == theirs[name], f"{what}: {name} differ"


def stored(state: MemoryState) -> dict[str, Any]:
    contents = state.contents()
    contents["sessions"] = state.dump()
    contents["erasure reach"] = reach(state)
    return contents


def reach(state: MemoryState) -> dict[str, set[str]]:
    """Per customer, the guest ids an erasure of it finds: its link set and its session's
    anonymous ids (``erase.lua``)."""
    out = {c: set(guests) for c, guests in state.links.items()}
    for key, session in state.sessions.items():
        if session.customer_id is not None and session.anonymous_ids:
            out.setdefault(key, set()).update(session.anonymous_ids)
    return out


def outcomes(plans: Iterable[Plan]) -> list[RecordOutcome]:
    return [o for plan in plans for o in plan.outcomes]


def check_bounds(state: MemoryState, limits: Limits) -> None:
    for session in state.sessions.values():
        assert len(session.cart) <= limits.max_cart_lines
        assert len(session.set_aside) <= limits.max_cart_lines
        assert len(session.recent_event_ids) <= limits.dedup_window


def reached(state: MemoryState, plans: list[Plan], limits: Limits, partitions: int) -> set[str]:
    """What of interest one example's run went through (the names are the assertion's)."""
    seen: set[str] = set()
    applied: dict[str, set[str]] = {}
    for plan in plans:
        for guest, customer in plan.deletes.items():
            seen.add(f"guest cart merged ({limits.merge_policy.value})")
            same = partition_of(guest.encode(), partitions) == partition_of(
                customer.encode(), partitions
            )
            seen.add(f"guest merged from {'its customer' if same else 'another'}'s partition")
        if plan.dropped_lines and limits.max_cart_lines == SMALL_CART:
            seen.add("lines dropped by a merge under the small line limit")
        for o in plan.outcomes:
            if o.kind is Kind.APPLIED and o.event is not None:
                applied.setdefault(o.session_key or "", set()).add(o.event.event_id)
                if isinstance(o.event, SessionUnmerged):
                    seen.add("unmerge applied")
            if o.reason is Reason.CART_FULL:
                seen.add("cart full")
    if 0 < limits.dedup_window < DEFAULT_LIMITS.dedup_window:
        for key, ids in applied.items():
            session = state.sessions.get(key)
            if session is not None and not ids <= set(session.recent_event_ids):
                seen.add("event ids forgotten beyond the window")
    return seen


def assert_reached(seen: Counter[str], wanted: Iterable[str]) -> None:
    missing = [w for w in wanted if not seen[w]]
    assert not missing, f"no example reached {missing}; reached {dict(seen)}"


@st.composite
def resent(
    draw: st.DrawFn, events: list[dict[str, Any]], most: int = 4, late: bool = False
) -> list[dict[str, Any]]:
    """``events`` with up to ``most`` of them sent again later (same ``event_id``), any
    number of other events in between (``late``: after all of them)."""
    out = list(events)
    for _ in range(draw(st.integers(0, most))):
        i = draw(st.integers(0, len(out) - 1))
        out.insert(len(out) if late else draw(st.integers(i + 1, len(out))), dict(out[i]))
    return out


def event_id(record: Record) -> str:
    decoded = decode(record.value)
    assert not isinstance(decoded, Rejected)
    return decoded.event_id


def test_guests_sit_on_their_customers_partition_and_on_others() -> None:
    """The ids the histories use put a guest on the partition of a customer it signs in
    to, and on another's, for every partition count (the cross-partition merges the
    properties need)."""
    for partitions in PARTITIONS:
        where = {i: partition_of(i.encode(), partitions) for i in (*CUSTOMERS, *GUESTS)}
        pairs = {(where[c] == where[g]) for c in CUSTOMERS for g in GUESTS}
        assert pairs == {True, False}, (partitions, where)
        assert len({where[c] for c in CUSTOMERS}) > 1, (partitions, where)
    for record in routed([ev("cart.cleared", customer="c-1", event_id="x")], 4):
        assert record.topic in SOURCE_TOPICS
        assert record.key == b"c-1"


def test_rewinds_and_batch_boundaries_across_partitions_change_nothing() -> None:
    seen: Counter[str] = Counter()

    @given(st.data())
    @settings(max_examples=400)
    def rewinds_change_nothing(data: st.DataObject) -> None:
        partitions = data.draw(st.sampled_from(PARTITIONS), label="partitions")
        fold_limits = data.draw(limits(), label="limits")
        log = routed(data.draw(histories(), label="history"), partitions)
        delivery = data.draw(deliveries(log), label="delivery")
        state, plans = run(delivery.batches, fold_limits)
        # Redelivery: the same batches without what came again.
        clean, clean_plans = run(delivery.first, fold_limits)
        assert_same_store(state, clean, what="redelivered")
        again = [o for o in outcomes(plans) if o.kind is Kind.ALREADY_APPLIED]
        assert len(again) == delivery.redelivered
        assert state.offsets == {tp: rs[-1].offset for tp, rs in by_partition(log).items()}
        # Batch boundaries: one clean pass, one record per batch.
        single, _ = run([[r] for batch in delivery.first for r in batch], fold_limits)
        assert_same_store(clean, single, what="batched")
        check_bounds(state, fold_limits)
        target(float(delivery.redelivered), label="records delivered again")
        found = reached(clean, clean_plans, fold_limits, partitions)
        if delivery.interleaved:
            found.add("a rewind next to another partition's new records")
        if delivery.redelivered and fold_limits.dedup_window == 0:
            found.add("redelivered with no event-id memory")
        if any(len({r.partition for r in batch}) > 1 for batch in delivery.first):
            found.add("a batch of several partitions")
        for what in sorted(found):
            event(what)
        seen.update(found)

    rewinds_change_nothing()
    assert_reached(
        seen,
        [
            "a rewind next to another partition's new records",
            "redelivered with no event-id memory",
            "a batch of several partitions",
            "unmerge applied",
            "cart full",
            "event ids forgotten beyond the window",
            "lines dropped by a merge under the small line limit",
            "guest merged from its customer's partition",
            "guest merged from another's partition",
            *(f"guest cart merged ({p.value})" for p in MergePolicy),
        ],
    )


def test_an_event_sent_again_later_applies_once_within_the_window() -> None:
    seen: Counter[str] = Counter()

    @given(st.data())
    @settings(max_examples=200)
    def sent_again_applies_once(data: st.DataObject) -> None:
        partitions = data.draw(st.sampled_from(PARTITIONS), label="partitions")
        fold_limits = data.draw(limits(windows=(DEFAULT_LIMITS.dedup_window,)), label="limits")
        log = routed(
            data.draw(resent(data.draw(histories(), label="history")), label="sent"), partitions
        )
        order = data.draw(arrival(log), label="arrival")
        seen.update(check_copies(data.draw(cuts(order), label="batches"), fold_limits))

    sent_again_applies_once()
    assert_reached(
        seen,
        [
            "copy after other events of its session",
            "copy to the session its original was merged into",
            "copy of a sign-in",
        ],
    )


def test_a_guest_event_sent_again_applies_once_whatever_its_guest_did_since() -> None:
    """One guest between two or three customers, on a device the guard watches, in the
    order sent, events within minutes (so sign-ins come out of order often), its events
    sent again after all the rest: the copies meet what the guest did since, as above."""
    seen: Counter[str] = Counter()

    @given(st.data())
    @settings(max_examples=200)
    def guest_copies_apply_once(data: st.DataObject) -> None:
        partitions = data.draw(st.sampled_from(PARTITIONS), label="partitions")
        fold_limits = data.draw(
            limits(windows=(DEFAULT_LIMITS.dedup_window,), shared=(1,)), label="limits"
        )
        story = data.draw(histories(kinds=SIGN_INS, one_guest=True), label="history")
        log = routed(data.draw(resent(story, late=True), label="sent"), partitions)
        seen.update(check_copies(data.draw(cuts(log), label="batches"), fold_limits))

    guest_copies_apply_once()
    assert_reached(
        seen,
        [
            "copy of a guest event after an undo of its sign-in",
            "copy of a guest event after its guest signed in to another customer",
            "copy of a guest event kept apart on a shared device",
        ],
    )


def check_copies(batches: list[list[Record]], fold_limits: Limits) -> Counter[str]:
    """Run ``batches`` and check them against the same records one per batch with every
    copy of an event already applied left out; every such copy must be a duplicate by
    its id, wherever its original went. What the copies went through, by name."""
    seen: Counter[str] = Counter()
    state, plans = run(batches, fold_limits)
    want, applied = MemoryState(), set[str]()
    for record in (r for batch in batches for r in batch):
        if event_id(record) not in applied:
            plan = want.process([record], fold_limits)
            applied |= {
                o.event.event_id for o in plan.outcomes if o.kind is Kind.APPLIED and o.event
            }
    assert_same_store(state, want, what="copies", but=("offsets", "fingerprints"))
    applied_to: dict[str, tuple[str, int, int]] = {}
    count: Counter[str] = Counter()
    # guest -> (when, the customer it signed in to or "undo"), applied ones
    moves: dict[str, list[tuple[int, str]]] = {}
    for n, o in enumerate(outcomes(plans)):
        eid, key, e = event_id(o.record), o.session_key or "", o.event
        if eid in applied_to:
            assert (o.kind, o.detail) == (Kind.DUPLICATE, "event_id already applied"), eid
            first_key, then, when = applied_to[eid]
            if first_key != key:
                seen["copy to the session its original was merged into"] += 1
            elif count[key] > then:
                seen["copy after other events of its session"] += 1
            if e is not None and e.customer_id and e.anonymous_id:
                seen["copy of a sign-in"] += 1
            if e is not None and e.anonymous_id and not e.customer_id:
                done = moves.get(e.anonymous_id, [])
                before = [m for at_n, m in done if at_n < when]
                since = [m for at_n, m in done if at_n > when]
                seen.update(guest_copy(e.anonymous_id, (first_key, key), before, since))
        elif o.kind is Kind.APPLIED and e is not None:
            count[key] += 1
            applied_to[eid] = (key, count[key], n)
            if isinstance(e, SessionUnmerged):
                moves.setdefault(e.payload.anonymous_id, []).append((n, "undo"))
            elif e.customer_id and e.anonymous_id:
                moves.setdefault(e.anonymous_id, []).append((n, e.customer_id))
    return seen


def guest_copy(guest: str, keys: tuple[str, str], before: list[str], since: list[str]) -> set[str]:
    """What a copy of a guest event went through: its original applied to ``keys[0]``,
    the copy to ``keys[1]``, the guest's sign-ins and undos before the original and
    between the two."""
    if "undo" in since:
        return {"copy of a guest event after an undo of its sign-in"}
    first, then = keys
    out = set()
    if len({first, *since} - {guest}) > 1:
        out.add("copy of a guest event after its guest signed in to another customer")
    # The guest had an alias (a sign-in not undone), yet the event went to its own session.
    linked = bool(before) and before[-1] != "undo"
    kept = (first == guest and linked) or (then == guest and (linked or bool(since)))
    if kept and (first != then or since):
        out.add("copy of a guest event kept apart on a shared device")
    return out


@pytest.mark.parametrize("between", range(2 * SMALL_WINDOW))
def test_beyond_the_window_an_event_sent_again_is_a_new_event(between: int) -> None:
    """With a window of 3 ids, an add re-sent after ``between`` other applied events of
    the same customer (on its other topics too) is a duplicate while ``between < 3``;
    after that the session no longer knows its id and the line is added again. Only
    redelivery of the same offset is guarded beyond the window (the properties above)."""
    c = "c-1"
    others = [
        ev("browse.search", {"query": f"q{i}"}, customer=c, at=at(1 + i), event_id=f"o{i}")
        if i % 2
        else ev("cart.item_added", add("B", 1), customer=c, at=at(1 + i), event_id=f"o{i}")
        for i in range(between)
    ]
    first = ev("cart.item_added", add("A", 1), customer=c, at=at(0), event_id="first")
    log = routed([first, *others, first], 4)
    state, plans = run([[r] for r in log], Limits(dedup_window=SMALL_WINDOW))
    again = outcomes(plans)[-1]
    quantity = {ln.sku: ln.quantity for ln in state.sessions[c].cart}["A"]
    if between < SMALL_WINDOW:
        assert (again.kind, again.detail, quantity) == (
            Kind.DUPLICATE,
            "event_id already applied",
            1,
        )
    else:
        assert (again.kind, quantity) == (Kind.APPLIED, 2)
    applied = ["first", *(e["event_id"] for e in others)]
    if between >= SMALL_WINDOW:
        applied.append("first")
    assert state.sessions[c].recent_event_ids == applied[-SMALL_WINDOW:]


def test_the_window_decides_every_copy_sent_later() -> None:
    seen: Counter[str] = Counter()

    @given(st.data())
    @settings(max_examples=150)
    def window_decides(data: st.DataObject) -> None:
        partitions = data.draw(st.sampled_from(PARTITIONS), label="partitions")
        window = data.draw(st.integers(1, 4), label="window")
        events = data.draw(
            histories(kinds=[k for k in KINDS if k not in ("login", "unmerge")], guests=False),
            label="history",
        )
        log = routed(data.draw(resent(events, most=6), label="sent"), partitions)
        order = data.draw(arrival(log), label="arrival")
        state, plans = run(data.draw(cuts(order), label="batches"), Limits(dedup_window=window))
        applied: dict[str, list[str]] = {}
        for o in outcomes(plans):
            assert o.event is not None
            assert o.session_key is not None
            ids = applied.setdefault(o.session_key, [])
            remembered = o.event.event_id in ids[-window:]
            caught = o.kind is Kind.DUPLICATE and o.detail == "event_id already applied"
            assert caught == remembered, (o.event.event_id, ids, o.kind, o.detail)
            if o.event.event_id in ids:
                seen["copy within the window" if remembered else "copy beyond the window"] += 1
            if o.kind is Kind.APPLIED:
                ids.append(o.event.event_id)
        for key, ids in applied.items():
            if ids:  # a key only ever rejected has no session
                assert state.sessions[key].recent_event_ids == ids[-window:]

    window_decides()
    assert_reached(seen, ["copy within the window", "copy beyond the window"])


# Found by the properties above, pinned here on the smallest history that shows each.


def merged_then_undone() -> list[dict[str, Any]]:
    """A guest's add, its sign-in and the undo of that merge."""
    return [
        ev("cart.item_added", add("A", 1), anon="g-1", at=at(0), event_id="g-add"),
        ev("session.identified", customer="c-1", anon="g-1", at=at(1), event_id="login"),
        ev("session.unmerged", {"anonymous_id": "g-1"}, customer="c-1", at=at(2), event_id="undo"),
    ]


def test_a_login_and_its_undo_in_one_batch_store_what_two_batches_store() -> None:
    """The guest's committed journey moves to the customer with the merge and stays
    there after the undo, and the customer's link set names the guest, as in two batches
    (the undo once dropped the merge's delete, and the link set took final aliases only)."""
    log = routed(merged_then_undone(), 3)
    together, _ = run([log[:1], log[1:]], DEFAULT_LIMITS)
    apart, _ = run([[r] for r in log], DEFAULT_LIMITS)
    assert apart.links == {"c-1": {"g-1"}}
    assert_same_store(together, apart)


def test_an_erasure_reaches_a_guest_signed_in_twice_in_one_batch() -> None:
    """Every sign-in links its guest to the customer, not only the batch's last alias:
    once the first merge is undone an erasure of the first customer still reaches it."""
    *merged, undo = merged_then_undone()
    again = ev("session.identified", customer="c-2", anon="g-1", at=at(1), event_id="login-2")
    log = routed([*merged, again, undo], 3)
    together, _ = run([log[:3], log[3:]], DEFAULT_LIMITS)
    apart, _ = run([[r] for r in log], DEFAULT_LIMITS)
    assert reach(apart)["c-1"] == {"g-1"}
    assert reach(together).get("c-1") == reach(apart)["c-1"]


@pytest.mark.parametrize("merged", [True, False], ids=["sent-before-sign-in", "sent-after"])
def test_a_guest_event_sent_again_after_an_undo_applies_once(merged: bool) -> None:
    """The guest's events went into the customer's session (merged with the guest's, or
    through its alias after the sign-in) and their ids stay there; after the undo a copy
    comes to the guest's own session again and is a duplicate because the customer's,
    which it signed in to, remembers it (it was once applied again). The add before the
    sign-in went back to the guest with the undo, the one after stays with the customer."""
    add_a, login, undo = merged_then_undone()
    add_b = ev("cart.item_added", add("B", 1), anon="g-1", at=at(1), event_id="g-add-b")
    history = [add_a, login, add_b, undo]
    copy = add_a if merged else add_b
    state, plans = run([[r] for r in routed([*history, copy], 3)], DEFAULT_LIMITS)
    assert [o.kind for o in outcomes(plans)] == [Kind.APPLIED] * 4 + [Kind.DUPLICATE]
    assert {ln.sku: ln.quantity for ln in state.sessions["g-1"].cart} == {"A": 1}
    assert {ln.sku: ln.quantity for ln in state.sessions["c-1"].cart} == {"B": 1}


def test_a_login_sent_again_after_another_sign_in_changes_nothing() -> None:
    """A re-sent sign-in its customer's session remembers is a duplicate before it can
    merge (the merge once ran first: the alias moved back, the version rose)."""
    first = ev("session.identified", customer="c-1", anon="g-1", at=at(0), event_id="login-1")
    history = [
        first,
        ev("session.identified", customer="c-2", anon="g-1", at=at(1), event_id="login-2"),
    ]
    want, _ = run([[r] for r in routed(history, 3)], DEFAULT_LIMITS)
    state, plans = run([[r] for r in routed([*history, first], 3)], DEFAULT_LIMITS)
    assert outcomes(plans)[-1].kind is Kind.DUPLICATE
    assert_same_store(state, want, but=("offsets", "fingerprints"))


@pytest.mark.parametrize("minute", [0, 3], ids=["dated-before", "dated-after"])
def test_a_guest_event_sent_again_after_its_device_became_shared_applies_once(
    minute: int,
) -> None:
    """The guest's add went into the first customer's session with its merge. A copy
    comes after the second sign-in made the device shared: dated before the sign-ins or
    after them, both are within the window of the two (the window counts both sides of
    an event's time, Security: Time), so it is kept apart in the device's own session.
    That did not apply it, but the first customer's, which the guest signed in to,
    remembers it: a duplicate either way (both were once applied again)."""
    add_a = ev("cart.item_added", add("A", 1), anon="g-1", at=at(minute), event_id="g-add")
    history = [
        add_a,
        ev("session.identified", customer="c-1", anon="g-1", at=at(1), event_id="login-1"),
        ev("session.identified", customer="c-2", anon="g-1", at=at(2), event_id="login-2"),
    ]
    state, plans = run([[r] for r in routed([*history, add_a], 3)], DEFAULT_LIMITS)
    copy = outcomes(plans)[-1]
    assert (copy.kind, copy.session_key) == (Kind.DUPLICATE, "g-1")
    assert plans[2].kept_apart["sign_in"] == 1
    assert "g-1" not in state.sessions
    assert {ln.sku: ln.quantity for ln in state.sessions["c-1"].cart} == {"A": 1}
    assert not state.sessions["c-2"].cart
