"""Omnichannel KPIs derived from committed plans (``streams/kpi.py``). Pure, no processes.

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

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Channel
from streams.batch import Plan, Record, Snapshot
from streams.kpi import checkouts_completed, cross_channel_resumes, multichannel_sessions
from streams.simulate import journey
from tests.pure import MemoryState, add, ev, records

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
    for plan, snapshot in _batches(events, cuts):
        total.update(cross_channel_resumes(plan, snapshot))
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


def test_a_line_changed_on_another_channel_is_one_resume_by_channel_pair() -> None:
    events = [
        ev("cart.item_added", add("A"), customer="c", channel="mobile_app", at=_at(1)),
        ev("cart.item_added", add("B"), customer="c", channel="mobile_app", at=_at(2)),
        ev("cart.quantity_set", {"sku": "A", "quantity": 3}, customer="c", channel="web"),
        ev("cart.item_added", add("B"), customer="c", channel="mobile_app", at=_at(4)),
    ]
    events[2]["occurred_at"] = _at(3)
    assert _resumes(events, [2]) == Counter({(APP, WEB): 1}), "same-channel change: none"
    assert _resumes(events, [2, 3]) == Counter({(APP, WEB): 1})


def test_removals_and_new_lines_are_not_resumes() -> None:
    events = [
        ev("cart.item_added", add("A"), customer="c", channel="mobile_app", at=_at(1)),
        ev("cart.item_removed", {"sku": "A"}, customer="c", channel="pos", at=_at(2)),
        ev("cart.item_added", add("B"), customer="c", channel="pos", at=_at(3)),
    ]
    assert _resumes(events, [1, 2]) == Counter()


def test_a_guest_line_resumed_after_login_counts_from_where_it_was_last_changed() -> None:
    guest = [ev("cart.item_added", add("A"), anon="g", channel="mobile_app", at=_at(1))]
    login = ev("session.identified", {}, customer="c", anon="g", channel="web", at=_at(2))
    change = ev("cart.quantity_set", {"sku": "A", "quantity": 2}, customer="c", channel="pos")
    change["occurred_at"] = _at(3)
    assert _resumes([*guest, login], [1]) == Counter(), "moving in a merge is no resume"
    assert _resumes([*guest, login, change], [1]) == Counter({(APP, POS): 1})
    assert _resumes([*guest, login, change], [1, 2]) == Counter({(APP, POS): 1})


def test_merged_lines_of_the_same_sku_resume_from_the_most_recent_one() -> None:
    events = [
        ev("cart.item_added", add("A"), customer="c", channel="pos", at=_at(1)),
        ev("cart.item_added", add("A"), anon="g", channel="mobile_app", at=_at(2)),
        ev("session.identified", {}, customer="c", anon="g", channel="web", at=_at(3)),
        ev("cart.quantity_set", {"sku": "A", "quantity": 5}, customer="c", channel="web"),
    ]
    events[3]["occurred_at"] = _at(4)
    assert _resumes(events, [2]) == Counter({(APP, WEB): 1})


def test_completed_checkouts_count_by_channel_and_a_repeated_order_does_not() -> None:
    events = [
        ev("cart.item_added", add("A"), customer="c", channel="web", at=_at(1)),
        ev("checkout.started", {}, customer="c", channel="pos", at=_at(2)),
        ev("checkout.completed", {"order_id": "o-1"}, customer="c", channel="pos", at=_at(3)),
        ev("checkout.completed", {"order_id": "o-1"}, customer="c", channel="pos", at=_at(4)),
        ev("checkout.completed", {"order_id": "o-2"}, customer="d", channel="voice", at=_at(5)),
    ]
    total: Counter[Channel] = Counter()
    for plan, _ in _batches(events, [3]):
        total.update(checkouts_completed(plan))
    assert total == Counter({POS: 1, Channel.VOICE: 1})
