"""Properties of the fold and the planner over generated event histories. Pure, no processes.

These are the guarantees the e2e tests rely on, checked over thousands of
histories: batch boundaries do not matter (a crash can split a batch anywhere),
redelivery changes nothing, a re-sent event applies once, and every session
keeps its invariants (totals, one currency, bounds, rising versions).
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.session import Session
from streams.core import session_codec
from streams.core.fold import DEFAULT_LIMITS
from streams.core.plan import Kind
from tests.support.pure import MemoryState, add, ev, records

CUSTOMERS = ("c-1", "c-2")
GUESTS = ("g-1", "g-2", "g-3")
SKUS = ("A", "B", "C", "D")
CHANNELS = ("web", "mobile_app", "pos", "call_center", "kiosk", "social", "voice")


@st.composite
def one_event(draw: st.DrawFn, n: int) -> dict[str, Any]:
    """Event number ``n`` of a history: any type, any of a few customers and guests."""
    kind = draw(
        st.sampled_from(
            (
                "add",
                "add",
                "add",
                "remove",
                "set",
                "clear",
                "view",
                "search",
                "start",
                "complete",
                "login",
            )
        )
    )
    who: dict[str, str] = {}
    if kind == "login":
        who = {"customer": draw(st.sampled_from(CUSTOMERS)), "anon": draw(st.sampled_from(GUESTS))}
    elif draw(st.booleans()):
        who = {"customer": draw(st.sampled_from(CUSTOMERS))}
    else:
        who = {"anon": draw(st.sampled_from(GUESTS))}
    minute = draw(st.integers(0, 59))
    common: dict[str, Any] = {
        "channel": draw(st.sampled_from(CHANNELS)),
        "at": f"2026-11-24T10:{minute:02d}:00Z",
        "event_id": f"e{n}",
        **who,
    }
    sku = draw(st.sampled_from(SKUS))
    match kind:
        case "add":
            # Prices of every scale: a subtotal keeps the smallest exponent of its terms.
            price = draw(st.sampled_from(("0.10", "9.99", "149.90", "5", "12.5", "0.0001")))
            currency = draw(st.sampled_from(("EUR", "EUR", "EUR", "USD")))
            return ev(
                "cart.item_added", add(sku, draw(st.integers(1, 600)), price, currency), **common
            )
        case "remove":
            return ev("cart.item_removed", {"sku": sku}, **common)
        case "set":
            return ev(
                "cart.quantity_set", {"sku": sku, "quantity": draw(st.integers(0, 5))}, **common
            )
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
            return ev("session.identified", **common)


@st.composite
def histories(draw: st.DrawFn, max_size: int = 40) -> list[dict[str, Any]]:
    size = draw(st.integers(1, max_size))
    return [draw(one_event(n)) for n in range(size)]


@st.composite
def cuts(draw: st.DrawFn, length: int) -> list[int]:
    """Batch boundaries: sorted positions strictly inside ``range(length)``."""
    if length < 2:
        return []
    return sorted(set(draw(st.lists(st.integers(1, length - 1), max_size=6))))


def in_batches(events: list[dict[str, Any]], bounds: list[int]) -> MemoryState:
    state = MemoryState()
    recs = records(events)
    edges = [0, *bounds, len(recs)]
    for lo, hi in itertools.pairwise(edges):
        state.process(recs[lo:hi])
    return state


@given(st.data())
@settings(max_examples=400, deadline=None)
def test_batch_boundaries_do_not_change_the_result(data: st.DataObject) -> None:
    events = data.draw(histories())
    bounds = data.draw(cuts(len(events)))
    whole = in_batches(events, [])
    split = in_batches(events, bounds)
    assert split.dump() == whole.dump()
    assert split.aliases == whole.aliases
    assert split.offsets == whole.offsets


@given(histories(), st.data())
@settings(max_examples=300, deadline=None)
def test_redelivering_any_range_changes_nothing(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    state = in_batches(events, [])
    before = state.dump()
    recs = records(events)
    lo = data.draw(st.integers(0, len(recs) - 1))
    hi = data.draw(st.integers(lo + 1, len(recs)))
    plan = state.process(recs[lo:hi])
    assert {o.kind for o in plan.outcomes} == {Kind.ALREADY_APPLIED}
    assert state.dump() == before


@given(histories(), st.data())
@settings(max_examples=300, deadline=None)
def test_an_event_sent_again_right_after_itself_applies_once(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    doubled_at = data.draw(st.sets(st.integers(0, len(events) - 1)))
    doubled = [e for i, e in enumerate(events) for _ in range(2 if i in doubled_at else 1)]
    assert in_batches(doubled, []).dump() == in_batches(events, []).dump()


@given(histories(max_size=60))
@settings(max_examples=400, deadline=None)
def test_every_session_keeps_its_invariants(events: list[dict[str, Any]]) -> None:
    state = MemoryState()
    versions: dict[str, int] = {}
    for rec in records(events):
        plan = state.process([rec])
        for key, session in plan.writes.items():
            assert session.version > versions.get(key, 0), "versions only rise"
            versions[key] = session.version
            check_invariants(session)
    for guest, customer in state.aliases.items():
        if guest in state.sessions:
            # Only a shared device keeps a guest session of its own after a sign-in.
            links = state.devices.get(guest, {})
            assert len(links) > DEFAULT_LIMITS.shared_device_customers, guest
        assert customer in state.sessions


def check_invariants(s: Session) -> None:
    limits = DEFAULT_LIMITS
    assert s.item_count == sum(ln.quantity for ln in s.cart)
    # Digits and exponent, not only the value: "12.50" and "12.5" are the same number
    # but not the same bytes in Redis, on the changelog or in a stream.
    full = sum((ln.unit_price * ln.quantity for ln in s.cart), Decimal(0))
    assert str(s.subtotal) == str(full)
    assert {ln.currency for ln in s.cart} == ({s.currency} if s.cart else set())
    assert all(1 <= ln.quantity <= 999 for ln in s.cart)
    assert len({ln.sku for ln in s.cart}) == len(s.cart) <= limits.max_cart_lines
    assert len({v.sku for v in s.recently_viewed}) == len(s.recently_viewed)
    assert len(s.recently_viewed) <= limits.recently_viewed
    assert len(s.recent_event_ids) <= limits.dedup_window
    assert len(set(s.channels)) == len(s.channels)
    assert Session.model_validate_json(s.model_dump_json()) == s, "stored JSON round-trips"
    stored = session_codec.decode(session_codec.encode(s))
    assert stored.model_dump_json() == s.model_dump_json(), "to the byte, exponents kept"


@given(
    st.lists(st.sampled_from(SKUS), min_size=1, max_size=4, unique=True),
    st.sampled_from(SKUS),
    st.integers(2, 58),
)
@settings(max_examples=200, deadline=None)
def test_an_add_racing_a_completed_checkout_survives_in_either_order(
    paid: list[str], extra: str, added_minute: int
) -> None:
    """Cart and checkout events travel on different topics: any arrival order must agree."""
    c = "c-1"
    history = [
        ev("cart.item_added", add(sku, 1), customer=c, at="2026-11-24T10:00:00Z", event_id=f"p{i}")
        for i, sku in enumerate(paid)
    ]
    history.append(ev("checkout.started", customer=c, at="2026-11-24T10:01:00Z", event_id="s"))
    late_add = ev(
        "cart.item_added",
        add(extra, 1),
        customer=c,
        channel="mobile_app",
        at=f"2026-11-24T10:{added_minute:02d}:00Z",
        event_id="late",
    )
    done = ev(
        "checkout.completed",
        {"order_id": "o"},
        customer=c,
        at="2026-11-24T10:59:00Z",
        event_id="done",
    )
    a = in_batches([*history, late_add, done], []).sessions[c]
    b = in_batches([*history, done, late_add], []).sessions[c]
    assert {ln.sku: ln.quantity for ln in a.cart} == {extra: 1}
    assert {ln.sku: ln.quantity for ln in b.cart} == {extra: 1}
    assert a.checkout.order_id == b.checkout.order_id == "o"
