"""Forwards between partitions in any order, sent again, and consumed again. Pure.

Random schedules (``tests/support/schedule.py``): partitions take batches of any mix
of their source records and forwards, whenever; relays publish whenever, any part of
their outbox; so forwards wait arbitrarily long and partitions run in any order.

Proves:

* exactly once: the same schedule with relays sending their last entries again (as
  after a crash) and consumer positions set back (as after a rebalance), of source
  topics and of ``session-forwards``, leaves the same store as without them: every
  extra record is ``already_applied`` or a forward ``sent again``, all else decides
  as before, the same forwards are written, and only the applied offsets of
  ``session-forwards`` (whose logs hold the re-sends) differ;
* batch boundaries: the same consumption cut into other batches leaves the same
  store, offsets included, and sends the same forwards (a forward's journey may
  list the same entries in another order, so their fingerprints are not compared);
* nothing lost, nothing doubled: with only adds and sign-ins (each guest signing
  in once, to one customer, COMBINE), every customer's cart holds, per sku, what it
  and its guest added, whatever was delivered when; nothing waits, nothing is left
  in an outbox.

The tests at the end pin what the batch-boundary property found in the planner
itself (one commit for every key, no partitions): a version floor of a guest that
a batch gave and then merged away, and one the commit kept for a guest whose
alias the batch moved before its old customer's session ended (both fixed; the
second in ``commit.lua`` and the in-memory store alike).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from schemas.session import Session
from schemas.topics import SESSION_FORWARDS
from streams.core.crossing import read_forward
from streams.core.fold import Limits, MergePolicy
from streams.core.placement import partition_of
from streams.core.plan import Kind, Record
from tests.core.test_merge_across_partitions import GUEST_TTL, SESSION_TTL, spread, stamp
from tests.core.test_partition_properties import (
    CUSTOMERS,
    GUESTS,
    PARTITIONS,
    SKUS,
    assert_reached,
    at,
    histories,
    limits,
    stored,
)
from tests.support.pure import MemoryState, add, ev, records, routed
from tests.support.schedule import Run, Step, draw_schedule, forwards_tp, noises, recuts

AGAIN = "forward sent again"


def store_of(run: Run, *, resent: bool = False) -> dict[str, Any]:
    """Everything the store holds, by name, and what the relays wrote and sent: how many
    forwards each origin wrote, what is left in the outboxes, each destination's
    forwards in order. A forward's bytes may differ in the order of its journey only
    (a guest's committed entries and its batch's): the forwards are compared with their
    journeys as sets, and not by the fingerprints of ``session-forwards``. ``resent``:
    its logs hold re-sends, so its applied offsets are left out too and each forward
    is taken once."""
    got = stored(run.world.store)
    names = ("offsets", "fingerprints") if resent else ("fingerprints",)
    for name in names:
        got[name] = {tp: v for tp, v in got[name].items() if not tp.startswith(SESSION_FORWARDS)}
    got["written"] = dict(run.world.written)
    got["outboxes"] = {o: box for o, box in run.world.outboxes.items() if box}
    got["forwards"] = {
        dest: sent(log, once=resent) for dest, log in sorted(run.world.topic.items())
    }
    return got


def sent(log: list[Record], once: bool) -> list[tuple[Any, ...]]:
    """``log``'s forwards, journeys as sets; ``once``: each (origin, entry id) once."""
    out, marks = [], set()
    for record in log:
        if once and record.forwarded in marks:
            continue
        marks.add(record.forwarded)
        fwd = read_forward(record.value)
        assert fwd is not None
        journey = sorted((j.member, j.score_ms) for j in fwd.journey)
        out.append((record.key, record.forwarded, fwd.model_copy(update={"journey": []}), journey))
    return out


def assert_same_stores(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    for name in want:
        assert got[name] == want[name], f"{what}: {name} differ"


def decided(run: Run) -> list[tuple[Any, ...]]:
    """What became of each record, noise left out."""
    return [
        (o.kind, o.session_key, o.detail, o.event.event_id if o.event else None)
        for o in run.outcomes
        if o.kind is not Kind.ALREADY_APPLIED and o.detail != AGAIN
    ]


class Watched(Run):
    """A ``Run`` that tells whether a batch moved a guest's alias away from a customer
    whose session it then ended
    (``test_a_guest_whose_alias_moved_keeps_no_floor_of_its_old_customer``)."""

    moved = False

    def commit(self, partition: int, batch: list[Record]) -> None:
        store = self.world.store
        aliases, links = dict(store.aliases), {k: set(v) for k, v in store.links.items()}
        super().commit(partition, batch)
        plan = self.world.plans[-1]
        for key in plan.cleared:
            for anon in links.get(key, ()):
                if aliases.get(anon) == key and plan.aliases.get(anon) not in (None, key):
                    self.moved = True


def test_forwards_sent_again_and_records_taken_again_change_nothing() -> None:
    seen: Counter[str] = Counter()

    @given(st.data())
    @settings(max_examples=400, deadline=None)
    def exactly_once(data: st.DataObject) -> None:
        partitions = data.draw(st.sampled_from(PARTITIONS), label="partitions")
        lim = data.draw(limits(), label="limits")
        history = data.draw(histories(), label="history")
        if data.draw(st.booleans(), label="sessions end"):
            lim = replace(lim, guest_ttl=GUEST_TTL, session_ttl=SESSION_TTL)
            history = data.draw(spread(history), label="times")
        log = routed(history, partitions)
        clean = Watched(log, partitions, lim)
        steps: list[Step] = draw_schedule(data.draw, clean)
        clean.finish()
        assert not clean.world.store.pending, "a session still waits"
        want = store_of(clean, resent=True)
        # Relays sending again and positions set back.
        tps = sorted({r.tp for r in log} | {forwards_tp(p) for p in range(partitions)})
        noise = data.draw(noises(steps, tps), label="noise")
        noisy = Run(log, partitions, lim).replay(steps, noise)
        assert_same_stores(store_of(noisy, resent=True), want, "noisy")
        assert decided(noisy) == decided(clean)
        # Each record that came again was skipped, once.
        again = [o for o in noisy.outcomes if o.kind is Kind.ALREADY_APPLIED or o.detail == AGAIN]
        assert len(again) == sum(map(len, noisy.batches)) - sum(map(len, clean.batches))
        for tp in (forwards_tp(p) for p in range(partitions)):
            applied = noisy.world.store.offsets.get(tp, -1)
            assert applied == len(noisy.log(tp)) - 1, f"{tp}: every record taken"
        # Batch boundaries: the same consumption cut otherwise.
        cut = Watched(log, partitions, lim).replay(steps, cuts=data.draw(recuts(steps), "cuts"))
        assert_same_stores(store_of(cut), store_of(clean), "cut")
        found = what_came_again(noisy)
        if clean.moved or cut.moved:
            found.add("an alias moved before its old customer ended, in one batch")
        if any(o.kind is Kind.HELD for o in clean.outcomes):
            found.add("records held while their session waited")
        if any(len(b) > 1 and any(r.topic == SESSION_FORWARDS for r in b) for b in clean.batches):
            found.add("forwards and source records in one batch")
        if len(cut.batches) > len(clean.batches):
            found.add("batches cut otherwise")
        for what in sorted(found):
            event(what)
        seen.update(found)

    exactly_once()
    assert_reached(
        seen,
        [
            "a forward sent again",
            "a forward taken again",
            "a source record taken again",
            "records held while their session waited",
            "forwards and source records in one batch",
            "batches cut otherwise",
        ],
    )


def what_came_again(run: Run) -> set[str]:
    found = set()
    for o in run.outcomes:
        if o.detail == AGAIN:
            found.add("a forward sent again")
        elif o.kind is Kind.ALREADY_APPLIED:
            forwarded = o.record.topic == SESSION_FORWARDS
            found.add(f"a {'forward' if forwarded else 'source record'} taken again")
    return found


@st.composite
def carts(draw: st.DrawFn, max_size: int = 40) -> list[dict[str, Any]]:
    """Adds of customers and guests and sign-ins: each guest signs in at most once, to
    one customer (drawn first), anywhere among its adds; one currency."""
    customers = draw(st.lists(st.sampled_from(CUSTOMERS), min_size=1, unique=True))
    guests = draw(st.lists(st.sampled_from(GUESTS), min_size=1, unique=True))
    to = {g: draw(st.sampled_from(customers)) for g in guests}
    out: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, max_size))):
        kind = draw(st.sampled_from(("customer", "guest", "guest", "login")))
        common: dict[str, Any] = {"at": at(draw(st.integers(0, 119))), "event_id": f"e{n}"}
        signed = {e["anonymous_id"] for e in out if e["type"] == "session.identified"}
        left = [g for g in guests if g not in signed]
        if kind == "login" and left:
            guest = draw(st.sampled_from(left))
            out.append(ev("session.identified", customer=to[guest], anon=guest, **common))
            continue
        if kind == "customer":
            common["customer"] = draw(st.sampled_from(customers))
        else:
            common["anon"] = draw(st.sampled_from(guests))
        line = add(draw(st.sampled_from(SKUS)), draw(st.integers(1, 9)))
        out.append(ev("cart.item_added", line, **common))
    return out


def owed(history: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """Per session key, the quantity per sku its cart must hold: a customer's adds and
    its guests' (before and after their sign-in); a guest never signed in, its own."""
    owner = {
        e["anonymous_id"]: e["customer_id"] for e in history if e["type"] == "session.identified"
    }
    want: dict[str, Counter[str]] = {}
    for e in history:
        if e["type"] == "cart.item_added":
            key = e.get("customer_id") or owner.get(e["anonymous_id"], e["anonymous_id"])
            want.setdefault(key, Counter())[e["payload"]["sku"]] += e["payload"]["quantity"]
    return want


def test_every_add_lands_once_in_its_customers_cart_whatever_the_order() -> None:
    seen: Counter[str] = Counter()
    fold = Limits(merge_policy=MergePolicy.COMBINE, shared_device_customers=len(CUSTOMERS))

    @given(st.data())
    @settings(max_examples=400, deadline=None)
    def nothing_lost(data: st.DataObject) -> None:
        partitions = data.draw(st.sampled_from(PARTITIONS), label="partitions")
        history = data.draw(carts(), label="history")
        log = routed(history, partitions)
        run = Run(log, partitions, fold)
        steps = draw_schedule(data.draw, run, max_steps=60, max_batch=8)
        run.finish()
        tps = sorted({r.tp for r in log} | {forwards_tp(p) for p in range(partitions)})
        noisy = Run(log, partitions, fold).replay(steps, data.draw(noises(steps, tps), "noise"))
        want = owed(history)
        for each in (run, noisy):
            store = each.world.store
            got = {k: cart(s) for k, s in store.sessions.items()}
            assert {k: c for k, c in got.items() if c} == want
            assert not store.pending, "a session still waits"
            assert not each.world.waiting(), "a forward never relayed"
            kinds = {o.kind for o in each.outcomes if o.detail != AGAIN}
            assert kinds <= {Kind.APPLIED, Kind.FORWARDED, Kind.HELD, Kind.ALREADY_APPLIED}
        found = set()
        for o in run.outcomes:
            if o.kind is Kind.HELD:
                found.add("a customer's add held while its session waited")
            if o.kind is Kind.FORWARDED and o.event is not None and o.event.customer_id is None:
                found.add("a guest's add forwarded to its customer's partition")
        found |= sign_ins(history, partitions)
        for what in sorted(found):
            event(what)
        seen.update(found)

    nothing_lost()
    assert_reached(
        seen,
        [
            "a customer's add held while its session waited",
            "a guest's add forwarded to its customer's partition",
            "a guest adding before and after its sign-in (its partition)",
            "a guest adding before and after its sign-in (another partition)",
        ],
    )


def cart(session: Session) -> Counter[str]:
    return Counter({line.sku: line.quantity for line in session.cart})


def sign_ins(history: list[dict[str, Any]], partitions: int) -> set[str]:
    """A guest that added before and after its sign-in, to a customer of its partition
    or of another."""
    found = set()
    for i, login in enumerate(history):
        if login["type"] != "session.identified":
            continue
        guest, customer = login["anonymous_id"], login["customer_id"]
        mine = [n for n, e in enumerate(history) if e.get("anonymous_id") == guest and n != i]
        if any(n < i for n in mine) and any(n > i for n in mine):
            same = partition_of(guest, partitions) == partition_of(customer, partitions)
            where = "its" if same else "another"
            found.add(f"a guest adding before and after its sign-in ({where} partition)")
    return found


# Found by the batch-boundary property above, in the planner itself: one store for
# every key (``MemoryState.process``), one batch against two.


def one_batch_and_two(history: list[dict[str, Any]], lim: Limits) -> tuple[MemoryState, ...]:
    log = records(history)
    apart, together = MemoryState(), MemoryState()
    for record in log:
        apart.process([record], lim)
    together.process(log[:1], lim)
    together.process(log[1:], lim)
    return apart, together


def test_a_guest_merged_in_the_batch_that_gave_it_a_floor_keeps_none() -> None:
    """c-1's session ends (its add comes over three hours on), which ends g-1's alias and gives
    g-1 c-1's version as a floor; g-1's event starts a session of its own, which the
    sign-in then merges into c-1. In two batches the merge deletes the floor with the
    session; in one, the floor was once kept after the delete (the commit keeps the
    batch's floors after its deletes), so the batch left one behind."""
    lim = Limits(guest_ttl=GUEST_TTL, session_ttl=SESSION_TTL)
    history = [
        ev("session.identified", customer="c-1", anon="g-1", at=stamp(0), event_id="login-1"),
        ev("cart.item_added", add("A"), customer="c-1", at=stamp(200), event_id="c-add"),
        ev("cart.item_removed", {"sku": "A"}, anon="g-1", at=stamp(210), event_id="g-remove"),
        ev("session.identified", customer="c-1", anon="g-1", at=stamp(201), event_id="login-2"),
    ]
    apart, together = one_batch_and_two(history, lim)
    assert "g-1" not in together.floors
    assert together.contents() == apart.contents()


def test_a_guest_whose_alias_moved_keeps_no_floor_of_its_old_customer() -> None:
    """g-3 signs in to c-2, then (on a device now shared, so its session stays apart)
    to c-6; then c-2's session ends. In two batches g-3's alias leads to c-6 by then and
    c-2's ending leaves it alone; in one batch the commit ends the stored alias (still
    c-2) before it writes c-6, and keeps c-2's version as g-3's floor: a later session of
    g-3's own goes on from it (where c-2's versions ran higher than c-6's, above what two
    batches give). Fixed in ``commit.lua`` and ``MemoryState.apply`` together: the
    ending skips a guest whose alias the batch sets elsewhere."""
    lim = Limits(guest_ttl=GUEST_TTL, session_ttl=SESSION_TTL)
    history = [
        ev("session.identified", customer="c-2", anon="g-3", at=stamp(0), event_id="login-1"),
        ev("session.identified", customer="c-6", anon="g-3", at=stamp(1), event_id="login-2"),
        ev("session.identified", customer="c-2", anon="g-8", at=stamp(100), event_id="login-3"),
    ]
    apart, together = one_batch_and_two(history, lim)
    assert together.aliases == apart.aliases == {"g-3": "c-6", "g-8": "c-2"}
    assert together.floors == apart.floors
