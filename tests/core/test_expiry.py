"""Session expiry in the fold and the planner (streams/core/expiry.py). Pure, no processes.

Proves: a session idle longer than its TTL (a guest's or a customer's, on event
time) ends at the event that finds it so, exactly at the millisecond boundary;
its successor goes on one version later and inherits nothing (cart, aliases of
merged guests, journey, dedupe window); a late event folds into whatever session
it finds; a session Redis already forgot (only its version floor left) ends
the same way; and all of it is independent of batch boundaries and
redelivery, equal to a one-event-at-a-time replay and to time travel's fold.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.session import Session
from streams.core.decode import decode
from streams.core.expiry import DAY, ended, successor
from streams.core.fold import DEFAULT_LIMITS, Applied, Limits, Rejected, fold
from streams.core.plan import Kind, Snapshot, plan_batch
from streams.core.time_travel import Replay
from tests.core.test_fold_properties import one_event
from tests.support.pure import MemoryState, add, ev, records

LIMITS = Limits(guest_ttl=2 * DAY, session_ttl=4 * DAY)
T = datetime(2026, 11, 24, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def at(days: float = 0, ms: int = 0) -> str:
    return iso(T + timedelta(days=days, milliseconds=ms))


def run(events: list[dict[str, Any]], limits: Limits = LIMITS) -> MemoryState:
    """One event at a time, as a worker that commits every record."""
    state = MemoryState(limits=limits)
    for rec in records(events):
        state.process([rec])
    return state


def carts(state: MemoryState, key: str) -> list[str]:
    return [line.sku for line in state.sessions[key].cart]


# --- The boundary ------------------------------------------------------------------


def test_idle_exactly_the_ttl_is_alive_one_millisecond_more_has_ended() -> None:
    s = Session(key="c", customer_id="c", version=3, updated_at=T)
    ttl = timedelta(seconds=LIMITS.session_ttl)
    assert not ended(s, T + ttl, LIMITS.guest_ttl, LIMITS.session_ttl)
    assert ended(s, T + ttl + timedelta(milliseconds=1), LIMITS.guest_ttl, LIMITS.session_ttl)
    assert not ended(
        Session(key="c", customer_id="c"), T + 10 * ttl, LIMITS.guest_ttl, LIMITS.session_ttl
    ), "a session that never applied an event has nothing to be idle since"


def test_a_customer_idle_exactly_the_ttl_keeps_its_cart() -> None:
    state = run(
        [
            ev("cart.item_added", add("A"), customer="c", at=at()),
            ev("cart.item_added", add("B"), customer="c", at=at(4)),
        ]
    )
    assert carts(state, "c") == ["A", "B"]
    assert state.sessions["c"].version == 2


def test_a_customer_idle_a_millisecond_past_the_ttl_starts_afresh_one_version_on() -> None:
    state = MemoryState(limits=LIMITS)
    events = [
        ev("cart.item_added", add("A"), customer="c", at=at()),
        ev("cart.item_added", add("B"), customer="c", at=at(4, ms=1)),
    ]
    recs = records(events)
    state.process(recs[:1])
    plan = state.process(recs[1:])
    assert plan.expired == {"c": 1}
    assert carts(state, "c") == ["B"]
    # v1 the first add, v2 the ending (a version clients see), v3 the new add.
    assert state.sessions["c"].version == 3
    assert state.sessions["c"].recent_event_ids == [events[1]["event_id"]], "no old dedupe ids"


def test_a_guest_ends_after_the_guest_ttl_a_customer_only_after_the_session_ttl() -> None:
    events = [
        ev("cart.item_added", add("A"), anon="g", at=at()),
        ev("cart.item_added", add("A"), customer="c", at=at()),
        ev("cart.item_added", add("B"), anon="g", at=at(31)),
        ev("cart.item_added", add("B"), customer="c", at=at(31)),
    ]
    state = run(events, DEFAULT_LIMITS)
    assert carts(state, "g") == ["B"], "a guest idle 31 days has ended (default 30)"
    assert carts(state, "c") == ["A", "B"], "a customer idle 31 days has not (default 90)"
    later = run([*events, ev("cart.item_added", add("C"), customer="c", at=at(122))])
    assert carts(later, "c") == ["C"], "idle 91 days, the customer's has too"


def test_a_late_event_folds_into_the_session_it_finds() -> None:
    state = run(
        [
            ev("cart.item_added", add("A"), customer="c", at=at()),
            ev("cart.item_added", add("B"), customer="c", at=at(100)),
            # Older than the session it finds: not idle, so no second ending.
            ev("cart.item_added", add("C"), customer="c", at=at(1)),
        ]
    )
    assert carts(state, "c") == ["B", "C"]
    assert state.sessions["c"].version == 4


def test_an_event_rejected_by_the_successor_still_ends_the_session() -> None:
    state = MemoryState(limits=LIMITS)
    recs = records(
        [
            ev("cart.item_added", add("A"), customer="c", at=at()),
            ev("cart.quantity_set", {"sku": "A", "quantity": 2}, customer="c", at=at(5)),
            ev("cart.item_added", add("B"), customer="c", at=at(5, ms=1)),
        ]
    )
    state.process(recs[:1])
    plan = state.process(recs[1:2])
    assert [o.kind for o in plan.outcomes] == [Kind.REJECTED], "A is no longer in the cart"
    assert plan.expired == {"c": 1}
    assert state.sessions["c"].version == 2
    assert state.sessions["c"].cart == []
    state.process(recs[2:])
    assert state.sessions["c"].version == 3
    assert carts(state, "c") == ["B"]


# --- Merged guests, aliases, journeys ---------------------------------------------


def merged(later: list[dict[str, Any]]) -> MemoryState:
    """Guest g's cart merged into customer c at T, then ``later``."""
    return run(
        [
            ev("cart.item_added", add("G"), anon="g", at=at()),
            ev("session.identified", customer="c", anon="g", at=at(0, ms=1)),
            *later,
        ]
    )


def test_a_guest_event_after_its_customer_session_ended_starts_the_guest_afresh() -> None:
    before = merged([])
    assert before.aliases == {"g": "c"}
    c_version = before.sessions["c"].version
    state = merged([ev("cart.item_added", add("N"), anon="g", at=at(5))])
    assert "g" not in state.aliases, "the alias ended with the session it pointed at"
    assert carts(state, "g") == ["N"]
    # Versions go on from the customer's: the ending, then the event.
    assert state.sessions["g"].version == c_version + 2
    assert state.sessions["c"] == before.sessions["c"], "the customer's waits for its own event"


def test_a_customer_session_ending_takes_its_aliases_links_and_journey() -> None:
    state = merged(
        [
            ev("browse.search", {"query": "x"}, anon="g", at=at(1)),
            ev("cart.item_added", add("N"), customer="c", at=at(6)),
        ]
    )
    assert carts(state, "c") == ["N"]
    assert state.aliases == {}
    assert "c" not in state.links
    assert len(state.journeys["c"]) == 1, "only the successor's own event"
    assert state.sessions["c"].anonymous_ids == []
    then = merged(
        [
            ev("browse.search", {"query": "x"}, anon="g", at=at(1)),
            ev("cart.item_added", add("N"), customer="c", at=at(6)),
            ev("cart.item_added", add("H"), anon="g", at=at(6, ms=1)),
        ]
    )
    assert carts(then, "g") == ["H"]
    assert carts(then, "c") == ["N"]


def test_a_sign_in_to_an_ended_session_links_the_guest_anew() -> None:
    state = merged([ev("session.identified", customer="c", anon="g", at=at(6))])
    assert state.aliases == {"g": "c"}
    assert state.sessions["c"].cart == [], "the merged cart ended with the session"
    assert state.sessions["c"].anonymous_ids == ["g"]


def test_a_guest_ended_before_its_sign_in_brings_nothing_to_the_merge() -> None:
    state = run(
        [
            ev("cart.item_added", add("G"), anon="g", at=at()),
            ev("cart.item_added", add("C"), customer="c", at=at(2)),
            ev("session.identified", customer="c", anon="g", at=at(3)),
        ]
    )
    assert carts(state, "c") == ["C"], "g idle 3 days > guest TTL 2"
    assert "g" not in state.sessions
    assert "g" not in state.journeys
    assert state.aliases == {"g": "c"}


def test_the_same_in_one_batch_as_in_many() -> None:
    events = [
        ev("cart.item_added", add("G"), anon="g", at=at()),
        ev("session.identified", customer="c", anon="g", at=at(0, ms=1)),
        ev("cart.item_added", add("N"), customer="c", at=at(6)),
        ev("session.identified", customer="c", anon="g", at=at(6, ms=1)),
        ev("cart.item_added", add("H"), anon="g", at=at(20)),
    ]
    whole = MemoryState(limits=LIMITS)
    whole.process(records(events))
    one_by_one = run(events)
    assert whole.dump() == one_by_one.dump()
    assert whole.journeys == one_by_one.journeys
    assert whole.aliases == one_by_one.aliases
    indexed(whole)
    indexed(one_by_one)


def indexed(state: MemoryState) -> None:
    """Every alias is in its target's link set (what an ending finds aliases by). The set
    may hold more (guests linked once; an unmerge does not take them out), so it is
    not compared between runs."""
    for anon, target in state.aliases.items():
        assert anon in state.links.get(target, set()), (anon, target)


# --- A session Redis forgot ------------------------------------------------------


def test_a_forgotten_session_with_its_floor_ends_as_if_it_were_there() -> None:
    """After the key TTL ran out only the version floor is left; the next event must
    give what it gives when the ended session is still stored."""
    history = [ev("cart.item_added", add("A"), customer="c", at=at(d)) for d in (0, 1, 2)]
    kept = run(history)
    nxt = records([*history, ev("cart.item_added", add("B"), customer="c", at=at(9))])[-1:]
    decoded = [decode(r.value) for r in nxt]
    stored = plan_batch(nxt, decoded, kept.snapshot(), LIMITS)
    forgotten = Snapshot({}, dict(kept.offsets), {}, floors={"c": 3})
    floor = plan_batch(nxt, decoded, forgotten, LIMITS)
    assert stored.expired == floor.expired == {"c": 3}
    assert stored.writes == floor.writes
    assert floor.writes["c"].version == 5
    assert [ln.sku for ln in floor.writes["c"].cart] == ["B"]


# --- Properties --------------------------------------------------------------------

STEPS = (-30, 0, 0, 1, 1, 24, 24 * 3, 24 * 5)  # hours between events: late, bursts, gaps


@st.composite
def spread_histories(draw: st.DrawFn, max_size: int = 40) -> list[dict[str, Any]]:
    """Histories over days: some events late, some after gaps longer than either TTL."""
    size = draw(st.integers(1, max_size))
    moment, events = T, []
    for n in range(size):
        event = draw(one_event(n))
        moment += timedelta(hours=draw(st.sampled_from(STEPS)), minutes=draw(st.integers(0, 59)))
        event["occurred_at"] = iso(moment)
        events.append(event)
    return events


def in_batches(events: list[dict[str, Any]], bounds: list[int]) -> MemoryState:
    state = MemoryState(limits=LIMITS)
    recs = records(events)
    for lo, hi in itertools.pairwise([0, *bounds, len(recs)]):
        state.process(recs[lo:hi])
    return state


def same(a: MemoryState, b: MemoryState) -> None:
    assert a.dump() == b.dump()
    assert a.aliases == b.aliases
    indexed(a)
    indexed(b)
    assert a.journeys == b.journeys
    assert a.offsets == b.offsets


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_expiry_is_independent_of_batch_boundaries_and_equals_a_replay(
    data: st.DataObject,
) -> None:
    events = data.draw(spread_histories())
    cut = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(events) - 1)), max_size=6))))
    bounds = [b for b in cut if 0 < b < len(events)]
    whole = in_batches(events, [])
    same(in_batches(events, bounds), whole)
    same(in_batches(events, list(range(1, len(events)))), whole)
    # Time travel folds with its own in-memory state (streams/core/time_travel.py),
    # here one record at a time, so floors must carry across its chunks.
    replay = Replay(limits=LIMITS)
    for rec in records(events):
        replay.fold([rec])
    assert replay.sessions == whole.sessions
    assert replay.aliases == whole.aliases


@given(spread_histories(), st.data())
@settings(max_examples=150, deadline=None)
def test_redelivery_after_expiry_changes_nothing(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    state = in_batches(events, [])
    before = (state.dump(), dict(state.aliases), {k: dict(v) for k, v in state.journeys.items()})
    recs = records(events)
    lo = data.draw(st.integers(0, len(recs) - 1))
    hi = data.draw(st.integers(lo + 1, len(recs)))
    plan = state.process(recs[lo:hi])
    assert {o.kind for o in plan.outcomes} == {Kind.ALREADY_APPLIED}
    assert (state.dump(), state.aliases, state.journeys) == before


@given(spread_histories(max_size=60))
@settings(max_examples=200, deadline=None)
def test_an_ended_session_hands_its_successor_nothing_and_versions_only_rise(
    events: list[dict[str, Any]],
) -> None:
    state = MemoryState(limits=LIMITS)
    versions: dict[str, int] = {}
    for rec in records(events):
        before = dict(state.sessions)
        plan = state.process([rec])
        for key, session in plan.writes.items():
            assert session.version > versions.get(key, 0), "versions only rise"
            versions[key] = session.version
        event = decode(rec.value)
        if isinstance(event, Rejected):
            assert not plan.expired
            continue
        login = event.customer_id is not None and event.anonymous_id is not None
        for key, last in plan.expired.items():
            # A guest whose alias ended has only a version floor (as a forgotten session).
            customer = key if event.customer_id == key else None
            old = before.get(key) or Session(key=key, customer_id=customer, version=last)
            assert old.version == last
            if login or key not in plan.writes:
                continue  # a merge adds the live guest's state; a merged-away guest is gone
            # What the successor holds is exactly the event folded into an empty session.
            outcome = fold(successor(old), event, LIMITS)
            want = outcome.session if isinstance(outcome, Applied) else successor(old)
            assert plan.writes[key] == want
