"""Omnichannel KPIs derived from committed plans (``streams/core/kpi.py``). Pure, no processes.

Proves: a session is counted once when it reaches two channels, whatever the
batch boundaries and however guests merge into customers; a cart line changed
on one channel and next on another is one resume labelled by the channel pair,
while merges, removals and same-channel changes are not; completed checkouts
count by channel and a repeated order does not.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Channel
from streams.core.kpi import multichannel_sessions
from streams.core.kpi_delta import path_label
from streams.core.plan import Kind, Plan, Record, Snapshot
from streams.dev.simulate import journey
from tests.support.pure import MemoryState, add, ev, records

WEB, APP, POS = Channel.WEB, Channel.MOBILE_APP, Channel.POS


def _batches(events: Sequence[dict[str, Any]], cuts: Sequence[int]) -> list[tuple[Plan, Snapshot]]:
    """Fold ``events`` as consecutive batches split at ``cuts``; each plan with its snapshot."""
    recs = records(events)
    bounds = [0, *sorted(set(cuts)), len(recs)]
    state = MemoryState()
    out = []
    for lo, hi in itertools.pairwise(bounds):
        batch: list[Record] = recs[lo:hi]
        if not batch:
            continue
        snapshot = state.snapshot()
        out.append((state.process(batch), snapshot))
    return out


def _multichannel(events: Sequence[dict[str, Any]], cuts: Sequence[int] = ()) -> int:
    return sum(multichannel_sessions(p, s) for p, s in _batches(events, cuts))


def _resumes(events: Sequence[dict[str, Any]], cuts: Sequence[int] = ()) -> Counter[Any]:
    total: Counter[Any] = Counter()
    for plan, _ in _batches(events, cuts):
        total.update(plan.kpis.resumes)
    return total


def _at(minute: int) -> str:
    return f"2026-11-24T10:{minute:02d}:00Z"


def test_a_session_is_counted_when_it_reaches_its_second_channel_and_only_then() -> None:
    events = [
        ev("browse.search", {"query": "boots"}, customer="c", channel="web", at=_at(1)),
        ev("browse.search", {"query": "socks"}, customer="c", channel="web", at=_at(2)),
        ev("browse.search", {"query": "caps"}, customer="c", channel="pos", at=_at(3)),
        ev("browse.search", {"query": "tees"}, customer="c", channel="kiosk", at=_at(4)),
    ]
    per_batch = [multichannel_sessions(p, s) for p, s in _batches(events, [1, 2, 3])]
    assert per_batch == [0, 0, 1, 0]
    assert _multichannel(events) == 1, "0 -> 3 channels in one batch also counts once"


def test_a_guest_that_reached_two_channels_is_not_counted_again_when_it_logs_in() -> None:
    events = [
        ev("browse.search", {"query": "a"}, anon="g", channel="social", at=_at(1)),
        ev("browse.search", {"query": "b"}, anon="g", channel="mobile_app", at=_at(2)),
        ev("session.identified", {}, customer="c", anon="g", channel="web", at=_at(3)),
    ]
    assert _multichannel(events, [2]) == 1
    assert _multichannel(events) == 1


def test_two_one_channel_sessions_meeting_at_login_count_once() -> None:
    events = [
        ev("browse.search", {"query": "a"}, anon="g", channel="mobile_app", at=_at(1)),
        ev("browse.search", {"query": "b"}, customer="c", channel="web", at=_at(2)),
        ev("session.identified", {}, customer="c", anon="g", channel="web", at=_at(3)),
    ]
    assert _multichannel(events, [2]) == 1
    assert _multichannel(events) == 1


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 40), max_size=6, unique=True))
def test_multichannel_count_does_not_depend_on_batch_boundaries(seed: int, cuts: list[int]) -> None:
    # Simulated journeys: guest on social and the app, login on the web, checkout anywhere.
    events = [e for n in range(3) for e in journey(seed, n, "kpi")]
    assert _multichannel(events, cuts) == _multichannel(events) == 3


def test_a_cart_changed_on_one_channel_and_touched_on_another_is_one_resume() -> None:
    events = [
        ev("cart.item_added", add("A"), customer="c", channel="mobile_app", at=_at(1)),
        ev("cart.item_added", add("B"), customer="c", channel="mobile_app", at=_at(2)),
        ev("browse.search", {"query": "x"}, customer="c", channel="web", at=_at(3)),
        ev(
            "cart.quantity_set", {"sku": "A", "quantity": 3}, customer="c", channel="web", at=_at(4)
        ),
        ev("cart.item_added", add("B"), customer="c", channel="mobile_app", at=_at(5)),
    ]
    events[3]["occurred_at"] = _at(4)
    # Web picks up the mobile cart (a search is a touch too); changing it there is no
    # second resume; back on the app, the cart last changed on the web is picked up again.
    expected = Counter({(APP, WEB): 1, (WEB, APP): 1})
    assert _resumes(events) == expected
    assert _resumes(events, [1, 2, 3, 4]) == expected


def test_only_the_first_touch_elsewhere_counts_and_an_empty_cart_never_resumes() -> None:
    events = [
        ev("browse.search", {"query": "x"}, customer="c", channel="pos", at=_at(1)),
        ev("cart.item_added", add("A"), customer="c", channel="mobile_app", at=_at(2)),
        ev("browse.search", {"query": "y"}, customer="c", channel="web", at=_at(3)),
        ev("browse.search", {"query": "z"}, customer="c", channel="pos", at=_at(4)),
        ev("cart.item_removed", {"sku": "A"}, customer="c", channel="pos", at=_at(5)),
        ev("cart.item_added", add("B"), customer="c", channel="kiosk", at=_at(6)),
    ]
    assert _resumes(events, [2, 4]) == Counter({(APP, WEB): 1})


def test_a_guest_cart_signed_in_on_another_channel_is_resumed_there() -> None:
    guest = [ev("cart.item_added", add("A"), anon="g", channel="mobile_app", at=_at(1))]
    login = ev("session.identified", {}, customer="c", anon="g", channel="web", at=_at(2))
    change = ev("cart.quantity_set", {"sku": "A", "quantity": 2}, customer="c", channel="pos")
    change["occurred_at"] = _at(3)
    assert _resumes([*guest, login, change], [1]) == Counter({(APP, WEB): 1})
    assert _resumes([*guest, login, change], [1, 2]) == Counter({(APP, WEB): 1})


def test_each_resume_is_also_a_notification_with_a_stable_id() -> None:
    events = [
        ev("cart.item_added", add("A"), customer="c", channel="mobile_app", at=_at(1)),
        ev("cart.item_added", add("B"), customer="c", channel="pos", at=_at(2), store_id="s-12"),
    ]
    first, second = MemoryState(), MemoryState()
    first.process(records(events))
    for batch in (records(events)[:1], records(events)[1:], records(events)):
        second.process(batch)  # the last batch is a full redelivery
    assert first.outbox == second.outbox
    (note,) = (orjson.loads(n) for n in first.outbox)
    assert note["type"] == "session.resumed_elsewhere"
    assert note["notification_id"] == "resumed:c:2"
    assert (note["from_channel"], note["to_channel"], note["store_id"]) == (
        "mobile_app",
        "pos",
        "s-12",
    )
    assert (note["item_count"], note["subtotal"]) == (2, "20.00")


def test_completed_checkouts_count_by_channel_and_a_repeated_order_does_not() -> None:
    events = [
        ev("cart.item_added", add("A"), customer="c", channel="web", at=_at(1)),
        ev("checkout.started", {}, customer="c", channel="pos", at=_at(2)),
        ev("checkout.completed", {"order_id": "o-1"}, customer="c", channel="pos", at=_at(3)),
        ev("checkout.completed", {"order_id": "o-1"}, customer="c", channel="pos", at=_at(4)),
        ev("checkout.completed", {"order_id": "o-2"}, customer="d", channel="voice", at=_at(5)),
    ]
    assert _kpis(events, [3]) == _kpis(events)
    kpis = _kpis(events)
    assert (kpis["checkouts:pos"], kpis["checkouts:voice"], kpis["checkouts:web"]) == (1, 1, 0)


def test_a_converted_cart_counts_by_start_channel_and_path_with_its_time_from_first_touch() -> None:
    events = [
        ev("browse.search", {"query": "x"}, customer="c", channel="social", at=_at(1)),
        ev("cart.item_added", add("A"), customer="c", channel="mobile_app", at=_at(2)),
        ev("browse.search", {"query": "y"}, customer="c", channel="web", at=_at(3)),
        ev("cart.item_added", add("B"), customer="c", channel="web", at=_at(4)),
        ev("checkout.started", {}, customer="c", channel="pos", at=_at(5)),
        ev("checkout.completed", {"order_id": "o-1"}, customer="c", channel="pos", at=_at(11)),
        ev("cart.item_added", add("C"), customer="c", channel="kiosk", at=_at(12)),
        ev("checkout.completed", {"order_id": "o-2"}, customer="c", channel="kiosk", at=_at(14)),
    ]
    kpis = _kpis(events)
    assert kpis["carts_started:mobile_app"] == 1
    assert kpis["carts_started:kiosk"] == 1
    assert kpis["converted:mobile_app"] == 1
    assert kpis["converted:kiosk"] == 1
    assert kpis["converted_path:mobile_app>web>pos"] == 1
    assert kpis["converted_path:kiosk"] == 1
    # 10 minutes from the social search, then 2 from the next journey's first event.
    assert kpis["ttc_count"] == 2
    assert kpis["ttc_sum_ms"] == 12 * 60_000
    assert kpis["ttc:900"] == 1
    assert kpis["ttc:300"] == 1


def test_path_labels_are_bounded() -> None:
    assert path_label([APP, APP, WEB]) == "mobile_app>web"
    assert path_label([APP, WEB, POS, Channel.KIOSK]) == "mobile_app>web>pos>+"


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 40), max_size=6, unique=True))
def test_every_kpi_and_notification_is_independent_of_batch_boundaries(
    seed: int, cuts: list[int]
) -> None:
    events = [e for n in range(3) for e in journey(seed, n, "kpi")]
    whole, cut = MemoryState(), MemoryState()
    plan = whole.process(records(events))
    recs = records(events)
    bounds = [0, *sorted(set(cuts)), len(recs)]
    for lo, hi in itertools.pairwise(bounds):
        if recs[lo:hi]:
            cut.process(recs[lo:hi])
    assert cut.kpis == whole.kpis
    assert cut.outbox == whole.outbox
    assert cut.journeys == whole.journeys
    applied = sum(o.kind is Kind.APPLIED for o in plan.outcomes)
    assert applied > 0
    assert sum(len(j) for j in whole.journeys.values()) == applied, "one entry per applied event"


def _kpis(events: Sequence[dict[str, Any]], cuts: Sequence[int] = ()) -> Counter[str]:
    total: Counter[str] = Counter()
    for plan, _ in _batches(events, cuts):
        total.update(plan.kpis.fields())
    return total
