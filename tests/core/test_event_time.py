"""Event time bounded by the record's Kafka timestamp (``streams/core/event_time.py``). Pure.

Proves: a claim beyond the skew is brought to the bound, one within it is kept
untouched (the same object), a record without a timestamp and a repaired dead
letter keep theirs; the planner bounds events where they come in, counts them,
and bounds them again, identically, when a forward or a held entry brings them
to another partition (the result equals one planner over every key); a replay
of the same records gives the same bytes; and the attacks the bound exists for:
a future-dated guest event cannot keep a session alive past its TTL or escape
the shared-device window, a back-dated sign-in cannot take a shared device's
guest cart, a future-dated cart cannot win a "newer wins" merge.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import AnyEvent
from streams.core.batch import Kind
from streams.core.event_time import bounded
from streams.core.fold import DEFAULT_LIMITS, MergePolicy
from streams.core.placement import partition_of
from streams.core.plan import Record
from tests.support.pure import MemoryState, add, ev, model, records, routed
from tests.support.saga import Partitions

AHEAD, BEHIND = 300, 7 * 86400
LIMITS = replace(DEFAULT_LIMITS, event_time_max_ahead=AHEAD, event_time_max_behind=BEHIND)
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def stamped(
    events: list[dict[str, Any]], ms: int = NOW_MS, topic: str = "cart-events"
) -> list[Record]:
    """Records of ``events`` on one partition, each stamped ``ms`` by the broker."""
    return [replace(r, timestamp_ms=ms) for r in records(events, topic)]


def added(at: datetime, **ids: Any) -> AnyEvent:
    return model(ev("cart.item_added", add("A"), at=iso(at), **ids))


def test_a_claim_beyond_the_skew_is_brought_to_the_bound() -> None:
    ahead = added(NOW + timedelta(days=400), customer="c")
    assert bounded(ahead, NOW_MS, AHEAD, BEHIND).occurred_at == NOW + timedelta(seconds=AHEAD)
    behind = added(NOW - timedelta(days=400), customer="c")
    assert bounded(behind, NOW_MS, AHEAD, BEHIND).occurred_at == NOW - timedelta(seconds=BEHIND)
    fine = added(NOW - timedelta(hours=5), customer="c")
    assert bounded(fine, NOW_MS, AHEAD, BEHIND) is fine, "within the bounds: untouched"
    assert bounded(ahead, None, AHEAD, BEHIND) is ahead, "no timestamp: nothing to bound by"
    assert bounded(ahead, NOW_MS, AHEAD, BEHIND, replayed=True) is ahead, "a repair keeps its time"
    assert bounded(ahead, NOW_MS, None, None) is ahead, "unbounded"
    assert bounded(ahead, 10**18, AHEAD, BEHIND) is ahead, "a stamp no datetime holds"


@settings(max_examples=200)
@given(
    offset_s=st.integers(min_value=-(10**9), max_value=10**9),
    stamp_ms=st.integers(min_value=0, max_value=4 * 10**12),
    ahead=st.integers(min_value=0, max_value=10**6),
    behind=st.integers(min_value=0, max_value=10**7),
)
def test_a_bounded_time_is_within_the_bounds_and_idempotent(
    offset_s: int, stamp_ms: int, ahead: int, behind: int
) -> None:
    stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=stamp_ms)
    claimed = added(
        max(stamp + timedelta(seconds=offset_s), datetime(1, 1, 2, tzinfo=UTC)), customer="c"
    )
    once = bounded(claimed, stamp_ms, ahead, behind)
    low, high = stamp - timedelta(seconds=behind), stamp + timedelta(seconds=ahead)
    kept = low <= claimed.occurred_at <= high
    assert (once is claimed) is kept, "moved exactly when out of bounds"
    assert kept or low <= once.occurred_at <= high, "and then onto the bounds"
    assert bounded(once, stamp_ms, ahead, behind) is once, "bounding twice changes nothing"


def test_the_planner_bounds_and_counts_what_comes_in_and_a_replay_is_byte_equal() -> None:
    far = NOW + timedelta(days=365)
    events = [
        ev("cart.item_added", add("A"), customer="c", at=iso(far), event_id="future"),
        ev("cart.item_added", add("B"), customer="c", at=iso(NOW), event_id="now"),
    ]
    live, again = MemoryState(limits=LIMITS), MemoryState(limits=LIMITS)
    plan = live.process(stamped(events))
    assert plan.clamped == 1
    session = live.sessions["c"]
    assert session.updated_at == NOW + timedelta(seconds=AHEAD), "not a year ahead"
    assert [ln.updated_at for ln in session.cart] == [NOW + timedelta(seconds=AHEAD), NOW]
    for record in stamped(events):
        again.process([record])
    assert again.dump() == live.dump(), "the timestamp is in the log: a replay bounds alike"
    unbounded = MemoryState()
    unbounded.process(stamped(events))
    assert unbounded.sessions["c"].updated_at == far, "the pure default leaves time alone"


def test_a_future_dated_guest_event_does_not_keep_its_session_alive() -> None:
    """A guest session ends after the guest TTL of event time; a claim a year ahead would
    have kept it (and its Redis keys) alive for a year."""
    events = [ev("cart.item_added", add("A"), anon="g", at=iso(NOW + timedelta(days=365)))]
    state = MemoryState(limits=LIMITS)
    state.process(stamped(events))
    later = NOW + timedelta(seconds=LIMITS.guest_ttl + 3600)
    state.process(
        [
            replace(r, offset=1)
            for r in stamped(
                [ev("browse.search", {"query": "q"}, anon="g", at=iso(later))],
                ms=int(later.timestamp() * 1000),
            )
        ]
    )
    session = state.sessions["g"]
    assert not session.cart, "the idle guest session ended: a fresh one took the search"


def test_a_back_dated_sign_in_does_not_take_a_shared_devices_guest_cart() -> None:
    """c-1 signs in on a kiosk; the next shopper's guest cart is on the kiosk; c-2 signs
    in with a time from before c-1's sign-in. Without bounds and the two-sided window,
    c-1's sign-in was "later" and did not count: c-2 took the kiosk's guest cart."""
    t = NOW
    events = [
        ev("session.identified", customer="c-1", anon="kiosk", at=iso(t), event_id="in-1"),
        ev(
            "cart.item_added",
            add("X"),
            anon="kiosk",
            at=iso(t + timedelta(minutes=5)),
            event_id="x",
        ),
        ev(
            "session.identified",
            customer="c-2",
            anon="kiosk",
            at=iso(t - timedelta(days=400)),
            event_id="in-2",
        ),
    ]
    state = MemoryState(limits=LIMITS)
    kept = [state.process([r]).kept_apart for r in stamped(events, ms=NOW_MS + 600_000)]
    assert kept[-1]["sign_in"] == 1, "the device is shared: the sign-in takes nothing"
    assert "X" not in {ln.sku for ln in state.sessions["c-2"].cart}
    assert {ln.sku for ln in state.sessions["c-1"].cart} == {"X"}, "c-1's stays c-1's"


def test_a_future_dated_guest_event_does_not_escape_the_shared_device_window() -> None:
    """Two customers signed in on a kiosk make it shared; a guest event dated beyond the
    window would have found no sign-in "within the window before it" and followed the
    kiosk's alias into the last customer's session."""
    t = NOW
    events = [
        ev("session.identified", customer="c-1", anon="kiosk", at=iso(t), event_id="in-1"),
        ev(
            "session.identified",
            customer="c-2",
            anon="kiosk",
            at=iso(t + timedelta(minutes=1)),
            event_id="in-2",
        ),
        ev("cart.item_added", add("X"), anon="kiosk", at=iso(t + timedelta(days=60)), event_id="x"),
    ]
    state = MemoryState(limits=LIMITS)
    for r in stamped(events, ms=NOW_MS + 120_000):
        state.process([r])
    assert "X" not in {ln.sku for ln in state.sessions["c-2"].cart}, "not into c-2's cart"
    assert {ln.sku for ln in state.sessions["kiosk"].cart} == {"X"}, "the kiosk's own"


def test_a_future_dated_guest_cart_does_not_win_a_newer_wins_merge() -> None:
    """keep_newest keeps the side active last; a guest claiming next year would win."""
    limits = replace(LIMITS, merge_policy=MergePolicy.KEEP_NEWEST)
    hour = timedelta(hours=1)
    sent = [
        (NOW, ev("cart.item_added", add("G"), anon="g", at=iso(NOW + 365 * 24 * hour))),
        (NOW + hour, ev("cart.item_added", add("C"), customer="c", at=iso(NOW + hour))),
        (NOW + hour, ev("session.identified", customer="c", anon="g", at=iso(NOW + 2 * hour))),
    ]
    state = MemoryState(limits=limits)
    for n, (stamp, event) in enumerate(sent):
        (record,) = stamped([event], ms=int(stamp.timestamp() * 1000))
        state.process([replace(record, offset=n)])
    assert {ln.sku for ln in state.sessions["c"].cart} == {"C"}, "the customer was active last"


def test_partitions_bound_a_forwarded_and_a_held_event_as_one_planner_does() -> None:
    """A guest of one partition signs in to a customer of another, both sides claiming
    times far from their records' stamps: the forwards carry the origin's timestamp, so
    every partition bounds each event as one planner over every key does (held entries carry
    it too: ``tests/core/test_merge_across_partitions.py`` runs such schedules)."""
    partitions = 4
    guest, customer = _apart(partitions)
    hour = timedelta(hours=1)
    sent = [
        ev("cart.item_added", add("G"), anon=guest, at=iso(NOW + 900 * hour), event_id="g"),
        ev("cart.item_added", add("C"), customer=customer, at=iso(NOW - 900 * hour), event_id="c"),
        ev(
            "session.identified",
            customer=customer,
            anon=guest,
            at=iso(NOW + 99 * hour),
            event_id="in",
        ),
        ev("cart.item_added", add("D"), customer=customer, at=iso(NOW + 500 * hour), event_id="d"),
        ev("cart.item_added", add("H"), anon=guest, at=iso(NOW - 500 * hour), event_id="h"),
    ]
    log = [
        replace(r, timestamp_ms=NOW_MS + 1000 * n) for n, r in enumerate(routed(sent, partitions))
    ]
    world = Partitions(partitions, LIMITS)
    single = MemoryState()
    consumed: dict[int, int] = {}
    forwarded = 0
    for record in log:
        plan = world.process(record.partition, [record])
        forwarded += sum(1 for o in plan.outcomes if o.kind is Kind.FORWARDED)
        world.drain(consumed)
        single.process([record], LIMITS)
    assert forwarded, "the sign-in and the guest's later event crossed partitions"
    assert world.store.dump() == single.dump()
    assert world.store.journeys == single.journeys
    merged = single.sessions[customer]
    assert {ln.sku for ln in merged.cart} == {"G", "C", "D", "H"}
    bound = NOW + timedelta(seconds=AHEAD) + timedelta(seconds=4)
    assert merged.updated_at is not None
    assert merged.updated_at <= bound, "no claim beyond the skew"


def _apart(partitions: int) -> tuple[str, str]:
    """A guest id and a customer id homed on two different partitions."""
    guest = "guest-0"
    for n in range(100):
        customer = f"cust-{n}"
        if partition_of(customer, partitions) != partition_of(guest, partitions):
            return guest, customer
    raise AssertionError("no two ids on different partitions")
