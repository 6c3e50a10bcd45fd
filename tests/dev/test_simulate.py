"""The simulated shoppers: valid, reproducible, and really moving across channels. Pure."""

from __future__ import annotations

import itertools

import orjson

from streams.core.decode import decode
from streams.core.fold import Rejected
from streams.dev.simulate import endless, workload
from tests.support.pure import MemoryState, records


def test_the_same_seed_gives_the_same_events_and_every_one_is_valid() -> None:
    events = workload(seed=3, customers=30)
    assert events == workload(seed=3, customers=30)
    assert events != workload(seed=4, customers=30)
    assert not [e for e in events if isinstance(decode(orjson.dumps(e)), Rejected)]
    assert len({e["event_id"] for e in events}) == len(events)


def test_journeys_cross_channels_merge_guests_and_check_out() -> None:
    state = MemoryState()
    plan = state.process(records(workload(seed=5, customers=40)))
    assert not plan.rejected, [o.detail for o in plan.rejected]
    customers = [s for s in state.sessions.values() if s.customer_id]
    assert state.aliases, "guests logged in and were merged"
    assert any(len(s.channels) >= 3 for s in customers)
    assert any(s.checkout.status == "completed" and not s.cart for s in customers)
    assert any(s.cart for s in state.sessions.values()), "some carts are abandoned"


def test_the_endless_demo_never_repeats_an_event_id() -> None:
    ids = [e["event_id"] for e in itertools.islice(endless(seed=1, customers=5), 200)]
    assert len(set(ids)) == len(ids)
